// Serving-shaped decoding from C#: a small transformer with random weights prefills a ragged batch of prompts (each
// prompt on its own, through the KV-cache call, which appends the prompt's keys and values to that sequence's pages),
// then decodes greedily, one token per sequence per step, against a paged KV cache on the GPU; the same model with the
// CPU engine's attention decodes the same prompts, and every token must agree.
//
//   dotnet run --project examples/GpuDecode -c Release
//
// Needs an NVIDIA Hopper GPU, its driver and NVRTC (see the README's "Running on a GPU"). The layers other than attention
// run on the host in float32 for both models (this example has no GPU matrix products), so tokens/s measures the whole
// loop, host work included.
using System.Diagnostics;
using FlashAttention.Cuda;

if (CudaEnvironment.Probe() is { IsUsable: false } env)
{
    Console.Error.WriteLine($"no usable GPU, skipped: {env.UnavailableMessage}");
    return 3;
}

int[] promptLengths = [5, 17, 33, 9];
const int newTokens = 32;
int batch = promptLengths.Length;
var model = new TinyTransformer(seed: 42);
var rng = new Random(7);
int[][] prompts = promptLengths.Select(n => Enumerable.Range(0, n).Select(_ => rng.Next(TinyTransformer.Vocab)).ToArray()).ToArray();

using var stream = new CudaStream();
using var gpuCache = new GpuPagedKvCache(batch, promptLengths.Max() + newTokens, Math.Max(promptLengths.Max(), batch), stream);
var cpuHistory = new CpuKvHistory(batch);

var (gpuTokens, gpuSeconds) = Generate((layer, first, count, tokens, q, k, v) => gpuCache.Attend(layer, first, count, tokens, q, k, v),
    gpuCache.BeginStep, gpuCache.EndStep);
var (cpuTokens, cpuSeconds) = Generate(cpuHistory.Attend, (_, _, _) => { }, (_, _, _) => { });

Console.WriteLine($"{CudaDevice.Get(0).Name}: {TinyTransformer.Layers}-layer transformer, d_model {TinyTransformer.Model}, " +
                  $"{TinyTransformer.HeadsQ}/{TinyTransformer.HeadsK} heads of {TinyTransformer.HeadDim}, fp16 attention, " +
                  $"paged KV cache (pages of {GpuPagedKvCache.PageSize} tokens)");
int mismatches = 0;
for (int b = 0; b < batch; b++)
{
    int first = Enumerable.Range(0, newTokens).FirstOrDefault(i => gpuTokens[b][i] != cpuTokens[b][i], -1);
    if (first >= 0) mismatches++;
    Console.WriteLine($"prompt {b} ({promptLengths[b]} tokens) → {string.Join(' ', gpuTokens[b].Take(12))} …  " +
                      (first < 0 ? $"all {newTokens} equal the CPU's" : $"differs from the CPU's from token {first} ({gpuTokens[b][first]} against {cpuTokens[b][first]})"));
}
Console.WriteLine($"decode: GPU attention {batch * newTokens / gpuSeconds:F0} tokens/s, CPU engine {batch * newTokens / cpuSeconds:F0} tokens/s " +
                  $"(batch {batch}, {newTokens} steps; host layers included)");
return mismatches == 0 ? 0 : 4;

// Prefills each prompt, then decodes newTokens greedily for all sequences at once; returns the tokens and the decode
// phase's seconds. attend(layer, first, count, tokens, q, k, v): attention for sequences [first, first + count) with
// `tokens` new tokens each; begin/end(first, count, tokens) bracket a step.
(int[][] Tokens, double Seconds) Generate(Func<int, int, int, int, Half[], Half[], Half[], Half[]> attend,
    Action<int, int, int> begin, Action<int, int, int> end)
{
    var generated = new int[batch][];
    var next = new int[batch];
    for (int b = 0; b < batch; b++)
    {
        int n = promptLengths[b], seq = b;
        begin(seq, 1, n);
        var logits = model.Forward(prompts[b], Enumerable.Range(0, n).ToArray(), (l, q, k, v) => attend(l, seq, 1, n, q, k, v));
        end(seq, 1, n);
        next[b] = TinyTransformer.Greedy(logits[^TinyTransformer.Vocab..])[0];
        generated[b] = new int[newTokens];
    }
    var clock = Stopwatch.StartNew();
    var positions = (int[])promptLengths.Clone();
    for (int step = 0; step < newTokens; step++)
    {
        for (int b = 0; b < batch; b++) generated[b][step] = next[b];
        if (step == newTokens - 1) break;
        begin(0, batch, 1);
        var logits = model.Forward(next, positions, (l, q, k, v) => attend(l, 0, batch, 1, q, k, v));
        end(0, batch, 1);
        next = TinyTransformer.Greedy(logits);
        for (int b = 0; b < batch; b++) positions[b]++;
    }
    return (generated, clock.Elapsed.TotalSeconds);
}
