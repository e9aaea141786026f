using FlashAttention.Cuda;
using FlashAttention.Cuda.Launchers;
using FlashAttention.Numerics;

namespace FlashAttention.Tests.Cuda;

/// <summary>
/// The FP8 path's host side: the Vᵀ key permutation, the rotation's sign bits, and every bad argument refused by name
/// before a device is touched (fake addresses, never dereferenced). The kernels themselves are checked on a GPU by
/// `flashattn verify` (probes fp8-qk/fp8-pv, the fp8 cases).
/// </summary>
public class Fp8Tests
{
    [Fact]
    public void The_vt_position_inverts_the_a_fragment_key_map()
    {
        // The FP8 A fragment reads byte b of register i as K index 16(i/2) + 4q + b and holds key 16(i/2) + 2q + b%2 + 8(b/2)
        // (q = lane % 4; shared/REFERENCES.md, checked on the H200): position 4q + b of a 16-key group holds key 2q + b%2 + 8(b/2).
        var seen = new HashSet<int>();
        for (int group = 0; group < 3; group++)
            for (int q = 0; q < 4; q++)
                for (int b = 0; b < 4; b++)
                {
                    int key = 16 * group + 2 * q + (b & 1) + 8 * (b >> 1);
                    int position = PrimitiveProbes.VtPosition(key);
                    Assert.Equal(16 * group + 4 * q + b, position);
                    Assert.True(seen.Add(position));
                }
    }

    [Theory]
    [InlineData(64, 0)]
    [InlineData(128, 7)]
    [InlineData(256, 12345)]
    public void Sign_bits_are_the_cpu_rotations_signs(int d, int seed)
    {
        var signs = Hadamard.RandomSigns(d, seed);
        var bits = Fp8ForwardLauncher.SignBits(d, seed);
        Assert.Equal(8, bits.Length);
        for (int i = 0; i < 256; i++)
        {
            bool negative = ((bits[i / 32] >> (i % 32)) & 1) != 0;
            Assert.Equal(i < d && signs[i] < 0, negative);
        }
    }

    [Fact]
    public void The_quantiser_plan_pads_vt_rows_to_16_keys()
    {
        Assert.Equal(16, new Fp8ForwardLauncher.Plan(1, 1, 0, 1, 1, 128, 64, 128).KeysPadded);
        Assert.Equal(80, new Fp8ForwardLauncher.Plan(1, 1, 77, 1, 1, 128, 64, 128).KeysPadded);
        var plan = new Fp8ForwardLauncher.Plan(2, 300, 515, 4, 2, 128, 64, 128);
        Assert.Equal((5, 5, 528), (plan.QBlocks, plan.KvBlocks, plan.KeysPadded));
    }

    private static DeviceTensor T(DataType type, long address, params long[] shape) => DeviceTensor.Contiguous((nint)address, type, shape);

    private static AttentionArgumentException ForwardFp8(int qBlock = 64, int kBlock = 256, int vBlock = 256, DataType codes = DataType.Float8E4M3,
        DataType output = DataType.BFloat16, long[]? kDescaleShape = null, AttentionOptions? options = null, int headDim = 128)
    {
        long[] q = [2, 300, 4, headDim], k = [2, 515, 2, headDim];
        var query = new Fp8Tensor(T(codes, 0x100000, q), T(DataType.Float32, 0x900000, 2, 4, (300 + qBlock - 1) / qBlock), qBlock);
        var key = new Fp8Tensor(T(codes, 0x200000, k), T(DataType.Float32, 0xA00000, kDescaleShape ?? [2, 2, (515 + kBlock - 1) / kBlock]), kBlock);
        var value = new Fp8Tensor(T(codes, 0x300000, k), T(DataType.Float32, 0xB00000, 2, 2, (515 + vBlock - 1) / vBlock), vBlock);
        return Assert.Throws<AttentionArgumentException>(() => CudaAttention.ForwardFp8(query, key, value, T(output, 0x400000, q), options: options));
    }

    [Fact]
    public void Pre_quantised_inputs_are_refused_by_name_before_any_launch()
    {
        Assert.Contains("query.BlockSize: expected a multiple of 64", ForwardFp8(qBlock: 100).Message);
        Assert.Contains("key.BlockSize: expected a multiple of 128", ForwardFp8(kBlock: 192, vBlock: 192).Message);
        Assert.Contains("value.BlockSize: expected 256", ForwardFp8(vBlock: 512).Message);
        Assert.Contains("expected E4M3 codes", ForwardFp8(codes: DataType.BFloat16).Message);
        Assert.Contains("output: expected element type BFloat16 or Float16", ForwardFp8(output: DataType.Float32).Message);
        Assert.Contains("key.Descales: expected shape (2, 2, 3)", ForwardFp8(kDescaleShape: [2, 2, 4]).Message);
        Assert.Contains("options.Softcap", ForwardFp8(options: new AttentionOptions { Softcap = 20 }).Message);
        Assert.Contains("head_dim 64, 128, 256; got 96", ForwardFp8(headDim: 96).Message);
    }

    [Fact]
    public void Whole_sequence_blocks_are_per_head_descales()
    {
        // A block at least the sequence long is one descale per (batch, head): accepted whatever its size; refused here
        // only later, for want of a GPU (no validation error).
        long[] q = [1, 300, 2, 128];
        var query = new Fp8Tensor(T(DataType.Float8E4M3, 0x100000, q), T(DataType.Float32, 0x900000, 1, 2, 1), 300);
        var key = new Fp8Tensor(T(DataType.Float8E4M3, 0x200000, q), T(DataType.Float32, 0xA00000, 1, 2, 1), 1000);
        var value = new Fp8Tensor(T(DataType.Float8E4M3, 0x300000, q), T(DataType.Float32, 0xB00000, 1, 2, 1), 1000);
        var e = Record.Exception(() => CudaAttention.ForwardFp8(query, key, value, T(DataType.BFloat16, 0x400000, q)));
        Assert.IsNotType<AttentionArgumentException>(e);
    }

    [Fact]
    public void Fp8_precision_runs_in_the_gpu_forward_only()
    {
        var fp8 = new AttentionOptions { Precision = AttentionPrecision.Fp8 };
        float[] x = new float[32], o = new float[32];
        var e = Assert.Throws<AttentionArgumentException>(() => Attention.Forward<float>(
            new System.Numerics.Tensors.ReadOnlyTensorSpan<float>(x, [1, 4, 1, 8], default), new System.Numerics.Tensors.ReadOnlyTensorSpan<float>(x, [1, 4, 1, 8], default),
            new System.Numerics.Tensors.ReadOnlyTensorSpan<float>(x, [1, 4, 1, 8], default), new System.Numerics.Tensors.TensorSpan<float>(o, [1, 4, 1, 8], default), fp8));
        Assert.Contains("options.Precision: Fp8 runs in the GPU forward only", e.Message);
        long[] shape = [1, 64, 2, 128];
        var t = T(DataType.BFloat16, 0x100000, shape);
        var lse = T(DataType.Float32, 0x800000, 1, 2, 64);
        e = Assert.Throws<AttentionArgumentException>(() => CudaAttention.Backward(t, T(DataType.BFloat16, 0x200000, shape), T(DataType.BFloat16, 0x300000, shape),
            T(DataType.BFloat16, 0x400000, shape), T(DataType.BFloat16, 0x500000, shape), lse, T(DataType.BFloat16, 0x600000, shape),
            T(DataType.BFloat16, 0x700000, shape), T(DataType.BFloat16, 0x780000, shape), fp8));
        Assert.Contains("the backward takes Default", e.Message);
        e = Assert.Throws<AttentionArgumentException>(() => CudaAttention.Forward(t, T(DataType.BFloat16, 0x200000, shape), T(DataType.BFloat16, 0x300000, shape),
            T(DataType.BFloat16, 0x400000, shape), options: fp8 with { Softcap = 30 }));
        Assert.Contains("options.Softcap: the FP8 kernel takes no softcap", e.Message);
    }
}
