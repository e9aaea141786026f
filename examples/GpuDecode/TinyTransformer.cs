using System.Numerics.Tensors;

/// <summary>
/// A small decoder-only transformer with random weights: token and position embeddings, pre-norm blocks of GQA attention
/// and a GELU MLP, a final norm and an output projection to the vocabulary. Everything but attention runs here on the
/// host in float32; attention is the caller's (<see cref="AttentionStep"/>), in float16, so two attention backends given
/// the same tokens see bit-identical queries, keys and values.
/// </summary>
internal sealed class TinyTransformer
{
    public const int Vocab = 512, Model = 512, HeadsQ = 8, HeadsK = 2, HeadDim = 128, Hidden = 1024, Layers = 2, MaxPositions = 256;
    private const int QWidth = HeadsQ * HeadDim, KWidth = HeadsK * HeadDim;

    /// <summary>
    /// Attention of one layer for the rows being run: q (rows, heads_q, head_dim), the rows' new keys and values
    /// (rows, heads_k, head_dim); returns the output (rows, heads_q, head_dim). The backend knows which sequences the rows
    /// belong to and keeps their keys and values.
    /// </summary>
    public delegate Half[] AttentionStep(int layer, Half[] q, Half[] k, Half[] v);

    private sealed record Layer(float[] Wq, float[] Wk, float[] Wv, float[] Wo, float[] W1, float[] W2);

    private readonly float[] _tokens, _positions, _out;
    private readonly Layer[] _layers;

    public TinyTransformer(int seed)
    {
        var rng = new Random(seed);
        float[] Normal(int rows, int cols, double scale)
        {
            var w = new float[rows * cols];
            for (int i = 0; i < w.Length; i++)
                w[i] = (float)(scale * Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble()));
            return w;
        }
        double Fan(int n) => 1 / Math.Sqrt(n);
        _tokens = Normal(Vocab, Model, 1);
        _positions = Normal(MaxPositions, Model, 0.5);
        _layers = Enumerable.Range(0, Layers).Select(_ => new Layer(
            Normal(QWidth, Model, Fan(Model)), Normal(KWidth, Model, Fan(Model)), Normal(KWidth, Model, Fan(Model)),
            Normal(Model, QWidth, Fan(QWidth)), Normal(Hidden, Model, Fan(Model)), Normal(Model, Hidden, Fan(Hidden)))).ToArray();
        _out = Normal(Vocab, Model, 4 * Fan(Model));  // sharp logits: a clear winner per step
    }

    /// <summary>Logits (rows, vocab) of the given tokens at the given positions.</summary>
    public float[] Forward(ReadOnlySpan<int> tokens, ReadOnlySpan<int> positions, AttentionStep attention)
    {
        int rows = tokens.Length;
        var x = new float[rows * Model];
        for (int r = 0; r < rows; r++)
            TensorPrimitives.Add(_tokens.AsSpan(tokens[r] * Model, Model), _positions.AsSpan(positions[r] * Model, Model), x.AsSpan(r * Model, Model));
        for (int l = 0; l < Layers; l++)
        {
            var w = _layers[l];
            var h = Norm(x, rows, Model);
            var o = attention(l, ToHalf(MatMul(h, rows, Model, w.Wq, QWidth)), ToHalf(MatMul(h, rows, Model, w.Wk, KWidth)),
                ToHalf(MatMul(h, rows, Model, w.Wv, KWidth)));
            TensorPrimitives.Add(x, MatMul(ToFloat(o), rows, QWidth, w.Wo, Model), x);
            var m = MatMul(Norm(x, rows, Model), rows, Model, w.W1, Hidden);
            for (int i = 0; i < m.Length; i++) m[i] = Gelu(m[i]);
            TensorPrimitives.Add(x, MatMul(m, rows, Hidden, w.W2, Model), x);
        }
        return MatMul(Norm(x, rows, Model), rows, Model, _out, Vocab);
    }

    /// <summary>The index of each row's largest logit.</summary>
    public static int[] Greedy(float[] logits) => Enumerable.Range(0, logits.Length / Vocab).Select(r => TensorPrimitives.IndexOfMax(logits.AsSpan(r * Vocab, Vocab))).ToArray();

    // y (rows, outputs) = x (rows, inputs) · Wᵀ, W (outputs, inputs): each output a dot product, rows and outputs in parallel.
    private static float[] MatMul(float[] x, int rows, int inputs, float[] w, int outputs)
    {
        var y = new float[rows * outputs];
        Parallel.For(0, rows * outputs, i =>
        {
            int r = i / outputs, j = i % outputs;
            y[i] = TensorPrimitives.Dot(x.AsSpan(r * inputs, inputs), w.AsSpan(j * inputs, inputs));
        });
        return y;
    }

    private static float[] Norm(float[] x, int rows, int width)
    {
        var y = new float[x.Length];
        for (int r = 0; r < rows; r++)
        {
            var row = x.AsSpan(r * width, width);
            float scale = 1 / MathF.Sqrt(TensorPrimitives.SumOfSquares(row) / width + 1e-6f);
            TensorPrimitives.Multiply(row, scale, y.AsSpan(r * width, width));
        }
        return y;
    }

    private static float Gelu(float v) => 0.5f * v * (1 + MathF.Tanh(0.7978845608f * (v + 0.044715f * v * v * v)));

    private static Half[] ToHalf(float[] a) => a.Select(v => (Half)v).ToArray();
    private static float[] ToFloat(Half[] a) => a.Select(v => (float)v).ToArray();
}
