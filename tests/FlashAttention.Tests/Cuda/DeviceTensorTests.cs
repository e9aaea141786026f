using FlashAttention.Cuda;

namespace FlashAttention.Tests.Cuda;

public class DeviceTensorTests
{
    [Fact]
    public void Contiguous_views_have_row_major_strides()
    {
        var t = DeviceTensor.Contiguous(0x1000, DataType.BFloat16, 2, 128, 8, 64);
        Assert.Equal([2L, 128, 8, 64], t.Lengths.ToArray());
        Assert.Equal([65536L, 512, 64, 1], t.Strides.ToArray());
        Assert.Equal(4, t.Rank);
        Assert.Equal(2L * 128 * 8 * 64, t.ElementCount);
        Assert.True(t.IsContiguous);
        Assert.Equal(0x1000UL, t.Address);
    }

    [Fact]
    public void Slices_of_a_packed_qkv_buffer_are_not_contiguous()
    {
        // q = qkv[:, :, 0:8, :] of a (2, 128, 24, 64) buffer: the token stride spans all 24 heads.
        var q = new DeviceTensor(0x1000, DataType.Float16, [2, 128, 8, 64], [128L * 24 * 64, 24 * 64, 64, 1]);
        Assert.False(q.IsContiguous);
    }

    [Fact]
    public void Layout_for_validation_keeps_everything()
    {
        var t = new DeviceTensor(0x2000, DataType.Float16, [2, 3], [3, 1]);
        var layout = t.ToLayout("query");
        Assert.Equal("query", layout.Name);
        Assert.Equal(DataType.Float16, layout.Type);
        Assert.Equal([2L, 3], layout.Lengths);
        Assert.Equal([3L, 1], layout.Strides);
        Assert.Equal((nuint)0x2000, layout.Address);
        Assert.Equal(((nuint)0x2000, (nuint)(0x2000 + 12)), layout.ByteExtent);
    }

    [Fact]
    public void Device_tensors_pass_through_the_shared_validation()
    {
        const int B = 1, S = 16, H = 2, D = 64;
        var q = DeviceTensor.Contiguous(0x10000, DataType.BFloat16, B, S, H, D);
        var k = DeviceTensor.Contiguous(0x20000, DataType.BFloat16, B, S, H, D);
        var v = DeviceTensor.Contiguous(0x30000, DataType.BFloat16, B, S, H, D);
        var o = DeviceTensor.Contiguous(0x40000, DataType.BFloat16, B, S, H, D);
        var lse = DeviceTensor.Contiguous(0x50000, DataType.Float32, B, H, S);
        var problem = AttentionValidation.Forward(q.ToLayout("query"), k.ToLayout("key"), v.ToLayout("value"), o.ToLayout("output"), lse.ToLayout("logSumExp"), null);
        Assert.Equal(D, problem.HeadDim);

        var overlapping = DeviceTensor.Contiguous(0x10000 + 64, DataType.BFloat16, B, S, H, D); // output on top of the query
        var e = Assert.Throws<AttentionArgumentException>(() => AttentionValidation.Forward(q.ToLayout("query"), k.ToLayout("key"), v.ToLayout("value"), overlapping.ToLayout("output"), null, null));
        Assert.Contains("must not share memory with query", e.Message);
    }

    [Fact]
    public void Mismatched_lengths_and_strides_are_refused()
        => Assert.Throws<ArgumentException>(() => new DeviceTensor(0, DataType.Float32, [1, 2], [1]));

    [Fact]
    public void Default_view_is_empty()
    {
        DeviceTensor t = default;
        Assert.Equal(0, t.Rank);
        Assert.True(t.Lengths.IsEmpty);
        Assert.Equal(1, t.ElementCount);
    }
}
