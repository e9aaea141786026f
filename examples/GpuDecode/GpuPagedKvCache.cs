using FlashAttention;
using FlashAttention.Cuda;

/// <summary>
/// The model's keys and values on the GPU in a paged cache: per layer a pool of pages of <see cref="PageSize"/> tokens,
/// one page table for every layer (sequence b's token t lives on page <c>table[b, t / PageSize]</c>), pages handed out
/// from a free list as sequences grow, and each sequence's length on the device. Attention runs through
/// <see cref="CudaAttention.ForwardWithKvCache"/>, which appends the step's keys and values in place first.
/// </summary>
internal sealed class GpuPagedKvCache : IDisposable
{
    public const int PageSize = 16;
    private const int HeadsQ = TinyTransformer.HeadsQ, HeadsK = TinyTransformer.HeadsK, HeadDim = TinyTransformer.HeadDim;

    private readonly int _batch, _maxPages, _maxRows;
    private readonly DeviceBuffer[] _keys, _values;
    private readonly CudaTensor<int> _lengths, _table;
    private readonly DeviceBuffer _q, _k, _v, _o;
    private readonly int[] _hostLengths, _hostTable;
    private readonly Stack<int> _freePages;
    private readonly CudaStream _stream;
    private bool _tableChanged;

    public GpuPagedKvCache(int batch, int maxTokens, int maxRows, CudaStream stream)
    {
        _batch = batch;
        _maxPages = (maxTokens + PageSize - 1) / PageSize;
        _maxRows = maxRows;
        _stream = stream;
        int pages = batch * _maxPages;
        long poolBytes = (long)pages * PageSize * HeadsK * HeadDim * 2;
        _keys = Enumerable.Range(0, TinyTransformer.Layers).Select(_ => new DeviceBuffer(poolBytes)).ToArray();
        _values = Enumerable.Range(0, TinyTransformer.Layers).Select(_ => new DeviceBuffer(poolBytes)).ToArray();
        _lengths = new CudaTensor<int>(batch);
        _table = new CudaTensor<int>(batch, _maxPages);
        _hostLengths = new int[batch];
        _hostTable = Enumerable.Repeat(-1, batch * _maxPages).ToArray();
        // Handed out in a scrambled order, as an allocator's free list is after a while of serving.
        _freePages = new Stack<int>(Enumerable.Range(0, pages).OrderBy(p => (p * 7919) % pages));
        _q = new DeviceBuffer((long)maxRows * HeadsQ * HeadDim * 2);
        _o = new DeviceBuffer((long)maxRows * HeadsQ * HeadDim * 2);
        _k = new DeviceBuffer((long)maxRows * HeadsK * HeadDim * 2);
        _v = new DeviceBuffer((long)maxRows * HeadsK * HeadDim * 2);
        _lengths.Upload(_hostLengths, stream);
    }

    /// <summary>Pages for sequences [first, first + count) to grow by <paramref name="tokens"/> each; the table and lengths uploaded.</summary>
    public void BeginStep(int first, int count, int tokens)
    {
        for (int b = first; b < first + count; b++)
            for (int page = _hostLengths[b] / PageSize; page * PageSize < _hostLengths[b] + tokens; page++)
                if (_hostTable[b * _maxPages + page] < 0)
                {
                    _hostTable[b * _maxPages + page] = _freePages.Pop();
                    _tableChanged = true;
                }
        if (_tableChanged) _table.Upload(_hostTable, _stream);
        _tableChanged = false;
        _lengths.Upload(_hostLengths, _stream);
    }

    /// <summary>After a step's layers: the sequences hold their new tokens.</summary>
    public void EndStep(int first, int count, int tokens)
    {
        for (int b = first; b < first + count; b++) _hostLengths[b] += tokens;
    }

    /// <summary>
    /// One layer's attention for sequences [first, first + count), <paramref name="tokens"/> new tokens each (their queries,
    /// keys and values in q, k, v, sequence-major): causal, the new keys appended first.
    /// </summary>
    public Half[] Attend(int layer, int first, int count, int tokens, Half[] q, Half[] k, Half[] v)
    {
        int rows = count * tokens;
        if (rows > _maxRows) throw new ArgumentOutOfRangeException(nameof(tokens), $"{rows} rows exceed the {_maxRows} the buffers hold");
        _q.CopyFrom<Half>(q, 0, _stream);
        _k.CopyFrom<Half>(k, 0, _stream);
        _v.CopyFrom<Half>(v, 0, _stream);
        var type = DataType.Float16;
        CudaAttention.ForwardWithKvCache(
            query: DeviceTensor.Contiguous(_q.Pointer, type, count, tokens, HeadsQ, HeadDim),
            keyCache: DeviceTensor.Contiguous(_keys[layer].Pointer, type, _batch * _maxPages, PageSize, HeadsK, HeadDim),
            valueCache: DeviceTensor.Contiguous(_values[layer].Pointer, type, _batch * _maxPages, PageSize, HeadsK, HeadDim),
            // Views of sequences [first, first + count) of the lengths and the page table.
            cacheSeqLens: new DeviceTensor(_lengths.Pointer + 4 * first, DataType.Int32, [count], [1]),
            output: DeviceTensor.Contiguous(_o.Pointer, type, count, tokens, HeadsQ, HeadDim),
            options: new AttentionOptions { Causal = true },
            newKeys: DeviceTensor.Contiguous(_k.Pointer, type, count, tokens, HeadsK, HeadDim),
            newValues: DeviceTensor.Contiguous(_v.Pointer, type, count, tokens, HeadsK, HeadDim),
            pageTable: new DeviceTensor(_table.Pointer + 4 * first * _maxPages, DataType.Int32, [count, _maxPages], [_maxPages, 1]),
            stream: _stream);
        var o = new Half[rows * HeadsQ * HeadDim];
        _o.CopyTo<Half>(o, 0, _stream);
        return o;
    }

    public void Dispose()
    {
        foreach (var b in _keys.Concat(_values).Concat([_q, _k, _v, _o])) b.Dispose();
        _lengths.Dispose();
        _table.Dispose();
    }
}
