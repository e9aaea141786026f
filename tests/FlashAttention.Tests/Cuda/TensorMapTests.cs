using System.Runtime.CompilerServices;
using FlashAttention.Cuda;

namespace FlashAttention.Tests.Cuda;

public class TensorMapTests
{
    /// <summary>A valid 4-D bf16 map over (head_dim 128, seqlen 1000, heads 8, batch 2), box 64×64 with 128-byte swizzle.</summary>
    private static TensorMapTiledSpec Valid() => new()
    {
        DataType = TensorMapDataType.BFloat16,
        GlobalAddress = 0x7f00_0000_0000,
        GlobalDims = [128, 1000, 8, 2],
        GlobalStridesBytes = [8 * 128 * 2, 128 * 2, 1000UL * 8 * 128 * 2],
        BoxDims = [64, 64, 1, 1],
        Swizzle = TensorMapSwizzle.Swizzle128B,
    };

    [Fact]
    public void Enum_values_match_cuda_h()
    {
        Assert.Equal(0, (int)TensorMapDataType.UInt8);
        Assert.Equal(6, (int)TensorMapDataType.Float16);
        Assert.Equal(7, (int)TensorMapDataType.Float32);
        Assert.Equal(9, (int)TensorMapDataType.BFloat16);
        Assert.Equal(0, (int)TensorMapSwizzle.None);
        Assert.Equal(1, (int)TensorMapSwizzle.Swizzle32B);
        Assert.Equal(2, (int)TensorMapSwizzle.Swizzle64B);
        Assert.Equal(3, (int)TensorMapSwizzle.Swizzle128B);
        Assert.Equal(0, (int)TensorMapInterleave.None);
        Assert.Equal(2, (int)TensorMapInterleave.Interleave32B);
        Assert.Equal([0, 1, 2, 3], Enum.GetValues<TensorMapL2Promotion>().Select(v => (int)v));
        Assert.Equal(0, (int)TensorMapOobFill.None);
        Assert.Equal(1, (int)TensorMapOobFill.NanRequestZeroFma);
    }

    [Fact]
    public void Descriptor_is_128_bytes()
    {
        Assert.Equal(128, Unsafe.SizeOf<TensorMapDescriptor>());
        Assert.Equal(TensorMapDescriptor.Size, Unsafe.SizeOf<TensorMapDescriptor>());
    }

    [Fact]
    public void Data_types_map_and_have_sizes()
    {
        Assert.Equal(TensorMapDataType.BFloat16, TensorMap.DataTypeFor(DataType.BFloat16));
        Assert.Equal(TensorMapDataType.Float16, TensorMap.DataTypeFor(DataType.Float16));
        Assert.Equal(TensorMapDataType.UInt8, TensorMap.DataTypeFor(DataType.Float8E4M3));
        Assert.Equal(TensorMapDataType.UInt8, TensorMap.DataTypeFor(DataType.Float8E5M2));
        Assert.Equal(2, TensorMap.ElementSize(TensorMapDataType.BFloat16));
        Assert.Equal(1, TensorMap.ElementSize(TensorMapDataType.UInt8));
        Assert.Equal(4, TensorMap.ElementSize(TensorMapDataType.Float32));
        Assert.Equal(128, TensorMap.SwizzleBytes(TensorMapSwizzle.Swizzle128B));
    }

    [Fact]
    public void A_valid_spec_passes() => TensorMap.Validate(Valid());

    private static readonly List<(string Expected, Func<TensorMapTiledSpec, TensorMapTiledSpec> Mutate)> InvalidCases = new()
    {
        ( "rank must be 1…5", s => s with { GlobalDims = [1, 2, 3, 4, 5, 6], GlobalStridesBytes = [16, 32, 64, 128, 256], BoxDims = [8, 1, 1, 1, 1, 1] }),
        ( "rank must be 1…5", s => s with { GlobalDims = [], GlobalStridesBytes = [], BoxDims = [] }),
        ( "16-byte aligned", s => s with { GlobalAddress = 0x7f00_0000_0008 }),
        ( "global stride 2 = 264 bytes must be a multiple of 16", s => s with { GlobalStridesBytes = [2048, 264, 2048000] }),
        ( "must be below 2^40", s => s with { GlobalStridesBytes = [2048, 256, 1UL << 40] }),
        ( "expected 3 global strides", s => s with { GlobalStridesBytes = [2048, 256] }),
        ( "box dimension 1 must be 1…256", s => s with { BoxDims = [64, 257, 1, 1] }),
        ( "box dimension 2 must be 1…256", s => s with { BoxDims = [64, 64, 0, 1] }),
        ( "exceeds the 128-byte swizzle span", s => s with { BoxDims = [128, 64, 1, 1] }),
        ( "exceeds the 64-byte swizzle span", s => s with { Swizzle = TensorMapSwizzle.Swizzle64B }),
        ( "must be a multiple of 16", s => s with { BoxDims = [4, 64, 1, 1], Swizzle = TensorMapSwizzle.None }),
        ( "global dimension 0 must be 1…2^32", s => s with { GlobalDims = [0, 1000, 8, 2] }),
        ( "element stride 0 must be 1…8", s => s with { ElementStrides = [9, 1, 1, 1] }),
        ( "expected 4 element strides", s => s with { ElementStrides = [1, 1] }),
        ( "needs a floating-point data type", s => s with { DataType = TensorMapDataType.UInt8, BoxDims = [128, 64, 1, 1], OobFill = TensorMapOobFill.NanRequestZeroFma }),
        ( "is not a CUtensorMapSwizzle", s => s with { Swizzle = (TensorMapSwizzle)7 }),
        ( "is not a CUtensorMapDataType", s => s with { DataType = (TensorMapDataType)42 }),
    };

    public static TheoryData<int> InvalidCaseIndices => new(Enumerable.Range(0, InvalidCases.Count));

    [Theory]
    [MemberData(nameof(InvalidCaseIndices))]
    public void Invalid_specs_are_refused_with_the_rule_they_break(int index)
    {
        var (expected, mutate) = InvalidCases[index];
        var e = Assert.Throws<ArgumentException>(() => TensorMap.Validate(mutate(Valid())));
        Assert.Contains(expected, e.Message);
        Assert.StartsWith("tensor map: ", e.Message);
    }

    [Fact]
    public void Fp8_box_of_128_bytes_fits_the_128_byte_swizzle()
    {
        TensorMap.Validate(Valid() with { DataType = TensorMapDataType.UInt8, BoxDims = [128, 64, 1, 1], GlobalDims = [128, 1000, 8, 2] });
    }

    [Fact]
    public void Rank_one_is_allowed_without_strides() => TensorMap.Validate(new TensorMapTiledSpec
    {
        DataType = TensorMapDataType.Float32, GlobalAddress = 256, GlobalDims = [1000], GlobalStridesBytes = [], BoxDims = [32],
    });

    [Fact]
    public void Encoding_an_invalid_spec_fails_before_touching_the_driver()
    {
        // Throws ArgumentException even where no driver exists: validation comes first.
        Assert.Throws<ArgumentException>(() => TensorMap.EncodeTiled(Valid() with { GlobalAddress = 3 }));
    }
}
