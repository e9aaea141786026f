using FlashAttention.Cuda;
using FlashAttention.Cuda.Launchers;
using FlashAttention.Cuda.Variants;

namespace FlashAttention.Tests.Cuda;

/// <summary>
/// What a launch memoises so that its host time is the launch itself: TMA descriptors by everything they are encoded
/// from, and the kernel catalogue's entries by variant. (The driver's encoding itself runs on the GPU machine: verify.)
/// </summary>
[Collection(PolicyScope.Collection)]
public class LaunchCacheTests
{
    private static TensorLayout Layout(nuint address, long[] lengths, long[]? strides = null, DataType type = DataType.BFloat16)
    {
        strides ??= [lengths[1] * lengths[2] * lengths[3], lengths[2] * lengths[3], lengths[3], 1];
        return new TensorLayout("query", type, lengths, strides, address);
    }

    [Fact]
    public void A_descriptor_is_encoded_once_per_address_shape_strides_box_and_device()
    {
        int encodes = 0;
        TensorMapDescriptor Encode() { encodes++; return default; }
        // an address no other test uses, so the shared cache holds none of these keys yet
        nuint address = (nuint)Random.Shared.NextInt64(1L << 40, 1L << 44) * 256;
        var t = Layout(address, [2, 1000, 8, 128]);
        var key = AttentionTensorMaps.KeyOf(t, 128, device: 0);
        AttentionTensorMaps.Cached(key, () => Encode());
        AttentionTensorMaps.Cached(AttentionTensorMaps.KeyOf(Layout(address, [2, 1000, 8, 128]), 128, 0), () => Encode());
        Assert.Equal(1, encodes);
        // anything the descriptor encodes makes another one
        AttentionTensorMaps.Cached(AttentionTensorMaps.KeyOf(t, 64, 0), () => Encode());                                   // box rows
        AttentionTensorMaps.Cached(AttentionTensorMaps.KeyOf(t, 128, 1), () => Encode());                                  // device
        AttentionTensorMaps.Cached(AttentionTensorMaps.KeyOf(Layout(address + 256, [2, 1000, 8, 128]), 128, 0), () => Encode());  // address
        AttentionTensorMaps.Cached(AttentionTensorMaps.KeyOf(Layout(address, [2, 1001, 8, 128]), 128, 0), () => Encode());        // length
        AttentionTensorMaps.Cached(AttentionTensorMaps.KeyOf(Layout(address, [2, 1000, 8, 128], [1000 * 8 * 128, 128, 1000 * 128, 1]), 128, 0), () => Encode());  // strides
        AttentionTensorMaps.Cached(AttentionTensorMaps.KeyOf(Layout(address, [2, 1000, 8, 128], type: DataType.Float16), 128, 0), () => Encode());             // type
        Assert.Equal(7, encodes);
    }

    [Fact]
    public void A_refused_spec_is_not_cached_and_the_cache_stays_bounded()
    {
        nuint address = (nuint)Random.Shared.NextInt64(1L << 44, 1L << 46) * 256;
        var key = AttentionTensorMaps.KeyOf(Layout(address, [1, 64, 1, 64]), 64, 0);
        Assert.Throws<InvalidOperationException>(() => AttentionTensorMaps.Cached(key, () => throw new InvalidOperationException("refused")));
        int encodes = 0;
        AttentionTensorMaps.Cached(key, () => { encodes++; return default; });
        Assert.Equal(1, encodes);
        for (int i = 1; i <= AttentionTensorMaps.MaxCached + 1; i++)
            AttentionTensorMaps.Cached(AttentionTensorMaps.KeyOf(Layout(address + (nuint)(256 * i), [1, 64, 1, 64]), 64, 0), () => default);
        Assert.InRange(AttentionTensorMaps.CachedCount, 1, AttentionTensorMaps.MaxCached);
    }

    [Fact]
    public void Descriptor_keys_take_only_attention_tensors()
        => Assert.Contains("rank-4", Assert.Throws<ArgumentException>(() =>
            AttentionTensorMaps.KeyOf(new TensorLayout("query", DataType.BFloat16, [64, 64], [64, 1], 0), 64, 0)).Message);

    [Fact]
    public void Catalogue_entries_are_memoised_by_variant_and_name_the_same_kernels()
    {
        foreach (var type in KernelCatalog.KernelTypes)
        {
            var variant = ForwardVariants.For(128, 4096, keysCutFromRight: false);
            var entry = KernelCatalog.ForwardEntry(type, variant);
            Assert.Same(entry, KernelCatalog.ForwardEntry(type, variant with { }));  // equal by value, not by instance
            Assert.Equal(variant.NameExpression(type), entry.NameExpression);
            Assert.Same(KernelCatalog.Spec(KernelCatalog.ForwardSource, variant.NameExpression(type)), entry.Spec);
            Assert.Contains(KernelCatalog.All(), e => e.Label == entry.Label && e.NameExpression == entry.NameExpression);

            var backward = BackwardVariants.For(256, softcap: true);
            var (main, pre, post) = KernelCatalog.BackwardEntry(type, backward);
            Assert.Equal((backward.NameExpression(type), backward.PreprocessExpression(type), backward.PostprocessExpression(type)),
                (main.NameExpression, pre.NameExpression, post.NameExpression));
            Assert.Same(KernelCatalog.Spec(KernelCatalog.BackwardSource, backward.NameExpression(type)), main.Spec);
            Assert.Equal(KernelCatalog.BackwardEntry(type, backward), KernelCatalog.BackwardEntry(type, backward with { }));
        }
    }
}
