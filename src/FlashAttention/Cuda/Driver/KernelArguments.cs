using System.Runtime.CompilerServices;

namespace FlashAttention.Cuda;

/// <summary>
/// Packs kernel arguments the way cuLaunchKernel wants them: one pointer per parameter, each pointing at that
/// parameter's value. Values are copied into one buffer, each at an offset aligned to its own alignment (64 bytes for
/// a <see cref="TensorMapDescriptor"/>, the natural alignment up to 16 for other values), so the block can be copied
/// to 64-byte-aligned memory at launch without breaking any value's alignment. Reusable via <see cref="Clear"/>.
/// </summary>
internal sealed unsafe class KernelArguments
{
    private byte[] _data = new byte[256];
    private readonly List<(int Offset, int Size)> _slots = [];
    private int _length;

    /// <summary>Number of arguments added.</summary>
    public int Count => _slots.Count;

    /// <summary>Bytes used, padding included.</summary>
    internal int Length => _length;

    /// <summary>Offset and size of argument <paramref name="index"/> (for tests and diagnostics).</summary>
    internal (int Offset, int Size) Slot(int index) => _slots[index];

    /// <summary>Sizes of the arguments, in order.</summary>
    public IEnumerable<int> Sizes => _slots.Select(s => s.Size);

    /// <summary>Appends a blittable value: an int, a float, a device address (ulong/nint), a tensor map, a small struct.</summary>
    public KernelArguments Add<T>(T value) where T : unmanaged
    {
        int size = sizeof(T);
        int align = typeof(T) == typeof(TensorMapDescriptor) ? TensorMapDescriptor.Alignment : NaturalAlignment(size);
        int offset = (_length + align - 1) & ~(align - 1);
        if (offset + size > _data.Length) Array.Resize(ref _data, Math.Max(_data.Length * 2, offset + size + 64));
        Unsafe.WriteUnaligned(ref _data[offset], value);
        _slots.Add((offset, size));
        _length = offset + size;
        return this;
    }

    /// <summary>Appends a device pointer (a <c>T*</c> parameter).</summary>
    public KernelArguments AddPointer(nint devicePointer) => Add((ulong)devicePointer);

    /// <summary>Appends the address of a device buffer.</summary>
    public KernelArguments Add(DeviceBuffer buffer) => Add(buffer.Address);

    /// <summary>Appends the address of a device tensor's element 0.</summary>
    public KernelArguments Add(DeviceTensor tensor) => Add(tensor.Address);

    /// <summary>Removes all arguments, keeping the storage.</summary>
    public void Clear()
    {
        _slots.Clear();
        _length = 0;
    }

    /// <summary>
    /// Copies the values to <paramref name="storage"/> (64-byte aligned, at least <see cref="Length"/> bytes) and
    /// fills <paramref name="pointers"/> (<see cref="Count"/> entries) with each value's address there.
    /// </summary>
    internal void WriteTo(byte* storage, void** pointers)
    {
        if ((nuint)storage % TensorMapDescriptor.Alignment != 0) throw new ArgumentException("argument storage must be 64-byte aligned", nameof(storage));
        new ReadOnlySpan<byte>(_data, 0, _length).CopyTo(new Span<byte>(storage, _length));
        for (int i = 0; i < _slots.Count; i++) pointers[i] = storage + _slots[i].Offset;
    }

    /// <summary>Largest power of two dividing <paramref name="size"/>, at most 16 (the widest alignment of a CUDA built-in type).</summary>
    internal static int NaturalAlignment(int size)
    {
        int align = size & -size;
        return align is 0 ? 1 : Math.Min(align, 16);
    }
}
