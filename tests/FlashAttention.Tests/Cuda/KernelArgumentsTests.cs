using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using FlashAttention.Cuda;

namespace FlashAttention.Tests.Cuda;

public unsafe class KernelArgumentsTests
{
    [Fact]
    public void Values_are_placed_at_their_natural_alignment()
    {
        var args = new KernelArguments()
            .Add(1.5f)               // 4 bytes at 0
            .Add(0x1234_5678_9abc_def0UL) // 8 bytes at 8
            .Add((byte)7)            // 1 byte at 16
            .Add(42);                // 4 bytes at 20
        Assert.Equal(4, args.Count);
        Assert.Equal((0, 4), args.Slot(0));
        Assert.Equal((8, 8), args.Slot(1));
        Assert.Equal((16, 1), args.Slot(2));
        Assert.Equal((20, 4), args.Slot(3));
        Assert.Equal([4, 8, 1, 4], args.Sizes);
    }

    [Fact]
    public void Tensor_maps_go_on_64_byte_boundaries()
    {
        var map = new TensorMapDescriptor();
        for (int i = 0; i < 16; i++) map[i] = (ulong)i * 0x0101_0101_0101_0101UL;
        var args = new KernelArguments().Add(3).Add(map).Add(9.0f);
        Assert.Equal((64, 128), args.Slot(1));
        Assert.Equal((192, 4), args.Slot(2));
    }

    [Fact]
    public void WriteTo_copies_values_and_points_at_each()
    {
        var map = new TensorMapDescriptor();
        for (int i = 0; i < 16; i++) map[i] = 0xA5A5_0000_0000_0000UL + (ulong)i;
        var args = new KernelArguments().Add(-7).Add(map).AddPointer(0x7000_1000).Add(2.5f);

        byte* raw = (byte*)NativeMemory.AlignedAlloc((nuint)args.Length, 64);
        void** pointers = stackalloc void*[args.Count];
        try
        {
            args.WriteTo(raw, pointers);
            Assert.Equal(-7, *(int*)pointers[0]);
            Assert.Equal(0, (nint)pointers[1] % 64);
            var copied = Unsafe.Read<TensorMapDescriptor>(pointers[1]);
            for (int i = 0; i < 16; i++) Assert.Equal(map[i], copied[i]);
            Assert.Equal(0x7000_1000UL, *(ulong*)pointers[2]);
            Assert.Equal(2.5f, *(float*)pointers[3]);
        }
        finally
        {
            NativeMemory.AlignedFree(raw);
        }
    }

    [Fact]
    public void WriteTo_refuses_unaligned_storage()
    {
        var args = new KernelArguments().Add(1);
        byte* raw = (byte*)NativeMemory.AlignedAlloc(128, 64);
        void** pointers = stackalloc void*[1];
        try
        {
            Assert.Throws<ArgumentException>(() => args.WriteTo(raw + 8, pointers));
        }
        finally
        {
            NativeMemory.AlignedFree(raw);
        }
    }

    [Fact]
    public void Storage_grows_and_clear_resets()
    {
        var args = new KernelArguments();
        for (int i = 0; i < 100; i++) args.Add((long)i);
        Assert.Equal(100, args.Count);
        Assert.Equal(800, args.Length);
        args.Clear();
        Assert.Equal(0, args.Count);
        Assert.Equal(0, args.Length);
        args.Add(5);
        Assert.Equal((0, 4), args.Slot(0));
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(2, 2)]
    [InlineData(4, 4)]
    [InlineData(8, 8)]
    [InlineData(12, 4)]
    [InlineData(16, 16)]
    [InlineData(32, 16)]
    [InlineData(24, 8)]
    public void Natural_alignment_is_the_largest_power_of_two_divisor_capped_at_16(int size, int alignment)
        => Assert.Equal(alignment, KernelArguments.NaturalAlignment(size));

    [Fact]
    public void Launch_structs_match_the_cuda_h_layout()
    {
        // CUlaunchAttribute: id (4) + pad (4) + 64-byte value union = 72; cluster dims at the union's start.
        Assert.Equal(72, sizeof(CuLaunchAttribute));
        Assert.Equal(8, (int)Marshal.OffsetOf<CuLaunchAttribute>(nameof(CuLaunchAttribute.ClusterDimX)));
        Assert.Equal(16, (int)Marshal.OffsetOf<CuLaunchAttribute>(nameof(CuLaunchAttribute.ClusterDimZ)));
        Assert.Equal(8, (int)Marshal.OffsetOf<CuLaunchAttribute>(nameof(CuLaunchAttribute.ProgrammaticStreamSerializationAllowed)));
        Assert.Equal(6, CuLaunchAttributeId.ProgrammaticStreamSerialization);
        // CUlaunchConfig: 7 uints (28) + pad to 32, stream at 32, attrs at 40, numAttrs at 48, size 56.
        Assert.Equal(56, sizeof(CuLaunchConfig));
        Assert.Equal(24, (int)Marshal.OffsetOf<CuLaunchConfig>(nameof(CuLaunchConfig.SharedMemBytes)));
        Assert.Equal(32, (int)Marshal.OffsetOf<CuLaunchConfig>(nameof(CuLaunchConfig.Stream)));
        Assert.Equal(40, (int)Marshal.OffsetOf<CuLaunchConfig>(nameof(CuLaunchConfig.Attrs)));
        Assert.Equal(48, (int)Marshal.OffsetOf<CuLaunchConfig>(nameof(CuLaunchConfig.NumAttrs)));
        Assert.Equal(4, CuLaunchAttributeId.ClusterDimension);
        Assert.Equal(8, CuFunctionAttribute.MaxDynamicSharedSizeBytes);
    }

    [Fact]
    public void Dim3_converts_from_int_and_counts_volume()
    {
        Dim3 d = 132;
        Assert.Equal(new Dim3(132, 1, 1), d);
        Assert.Equal(24UL, new Dim3(2, 3, 4).Volume);
        Assert.Equal("(2, 3, 4)", new Dim3(2, 3, 4).ToString());
        Assert.Throws<OverflowException>(() => { Dim3 bad = -1; });
    }
}
