// The lab works on the whole library; these are the namespaces nearly every lab file reads.
global using FlashAttention.Cpu;
global using FlashAttention.Cuda;
global using FlashAttention.Lab.Cpu;
global using FlashAttention.Lab.Numerics;
global using FlashAttention.Lab.Probes;
global using FlashAttention.Numerics;
