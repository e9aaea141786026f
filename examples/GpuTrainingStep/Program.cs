// A training-shaped step on the GPU from C#: attention forward and backward with FlashAttention-3 kernels on an
// H100/H200, then the same gradients on the CPU (float64 reference) to show they agree.
//
//   dotnet run --project examples/GpuTrainingStep -c Release
//
// Needs an NVIDIA Hopper GPU, its driver and NVRTC (see the README's "Running on a GPU").
using System.Numerics.Tensors;
using FlashAttention;
using FlashAttention.Cpu;
using FlashAttention.Cuda;
using FlashAttention.Numerics;

if (CudaEnvironment.Probe() is { IsUsable: false } env)
{
    Console.Error.WriteLine($"no usable GPU: {env.UnavailableMessage}");
    return 3;
}

const int batch = 2, seqLen = 1024, heads = 8, headsKv = 2, headDim = 128;   // GQA 4:1, as in many LLMs
long[] qShape = [batch, seqLen, heads, headDim], kvShape = [batch, seqLen, headsKv, headDim], lseShape = [batch, heads, seqLen];
var options = new AttentionOptions { Causal = true };

// Activations as a model would hold them, in bfloat16 (here: random).
var rng = new Random(42);
BFloat16[] Random(long[] shape) => Enumerable.Range(0, (int)shape.Aggregate(1L, (a, b) => a * b))
    .Select(_ => (BFloat16)(float)(Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble()))).ToArray();
var (q, k, v, dO) = (Random(qShape), Random(kvShape), Random(kvShape), Random(qShape));

// GPU: upload, forward (keeps the log-sum-exp for the backward pass), backward.
using var dq = CudaTensor<BFloat16>.FromHost(q, qShape);
using var dk = CudaTensor<BFloat16>.FromHost(k, kvShape);
using var dv = CudaTensor<BFloat16>.FromHost(v, kvShape);
using var dOut = new CudaTensor<BFloat16>(qShape);
using var dLse = new CudaTensor<float>(lseShape);
using var dGradOut = CudaTensor<BFloat16>.FromHost(dO, qShape);
using var dGradQ = new CudaTensor<BFloat16>(qShape);
using var dGradK = new CudaTensor<BFloat16>(kvShape);
using var dGradV = new CudaTensor<BFloat16>(kvShape);
using var stream = new CudaStream();

CudaAttention.Forward(dq, dk, dv, dOut, dLse, options, stream);
CudaAttention.Backward(dq, dk, dv, dOut, dGradOut, dLse, dGradQ, dGradK, dGradV, options, stream);
stream.Synchronize();

// CPU: the float64 reference's gradients of the same inputs.
ReadOnlyTensorSpan<BFloat16> Span(BFloat16[] a, long[] shape) => new(a, shape.Select(x => (nint)x).ToArray(), []);
var reference = ReferenceAttention.Backward(Span(q, qShape), Span(k, kvShape), Span(v, kvShape), Span(dO, qShape), options);

double MaxError(CudaTensor<BFloat16> gpu, double[] cpu) => gpu.ToArray().Zip(cpu, (g, c) => Math.Abs((float)g - c)).Max();
double MaxAbs(double[] a) => a.Max(Math.Abs);
Console.WriteLine($"{CudaDevice.Get(0).Name}: causal GQA attention, b{batch} s{seqLen} h{heads}/{headsKv} d{headDim}, bf16");
Console.WriteLine($"dQ max |GPU − CPU float64| = {MaxError(dGradQ, reference.Query):E2} (values up to {MaxAbs(reference.Query):F2})");
Console.WriteLine($"dK max |GPU − CPU float64| = {MaxError(dGradK, reference.Key):E2} (values up to {MaxAbs(reference.Key):F2})");
Console.WriteLine($"dV max |GPU − CPU float64| = {MaxError(dGradV, reference.Value):E2} (values up to {MaxAbs(reference.Value):F2})");
return 0;
