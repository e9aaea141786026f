using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace FlashAttention.Cli.Npy;

/// <summary>
/// Reads and writes NumPy's <c>.npy</c> format (versions 1.0, 2.0 and 3.0): the magic <c>\x93NUMPY</c>, a version,
/// a little-endian header length (2 bytes in 1.0, 4 in 2.0/3.0), a Python dict literal
/// <c>{'descr': …, 'fortran_order': …, 'shape': (…), }</c> (latin-1, UTF-8 in 3.0) padded with spaces and a newline,
/// then the raw data. Only C order and the element types of <see cref="NpyElementType"/> are accepted.
/// Every failure is an <see cref="NpyFormatException"/> naming the file and what was expected.
/// </summary>
public static class NpyFile
{
    private static readonly byte[] Magic = [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];
    private const int MaxHeaderLength = 1 << 20;

    /// <summary>Reads a whole <c>.npy</c> file.</summary>
    public static NpyArray Read(string path) => ReadFile(path, stream => Read(stream, path));

    /// <summary>Reads one array from <paramref name="stream"/>; <paramref name="name"/> labels messages.</summary>
    public static NpyArray Read(Stream stream, string name)
    {
        var (descr, shape, data) = ReadRaw(stream, name, descr =>
            NpyDescr.Parse(descr, out string? refusal) is { } type ? (NpyDescr.SizeOf(type), null) : (0, refusal));
        return new NpyArray(descr, shape, data);
    }

    /// <summary>
    /// Reads a file of int32 values ('&lt;i4', as <c>np.save(f, x.astype(np.int32))</c> writes them): sequence offsets and
    /// other indices, which the attention tensors' <see cref="NpyArray"/> does not hold.
    /// </summary>
    public static (long[] Shape, int[] Values) ReadInt32(string path) => ReadFile(path, stream =>
    {
        var (_, shape, data) = ReadRaw(stream, path, descr => descr is "<i4" or "|i4" ? (4, null)
            : (0, $"dtype '{descr}'; expected int32 '<i4' (convert with x.astype(np.int32))"));
        var values = new int[data.Length / 4];
        for (int i = 0; i < values.Length; i++) values[i] = BinaryPrimitives.ReadInt32LittleEndian(data.AsSpan(4 * i));
        return (shape, values);
    });

    // Opens the file and reads it with read; a file that cannot be opened or read is an NpyFormatException naming it.
    private static T ReadFile<T>(string path, Func<Stream, T> read)
    {
        FileStream stream;
        try
        {
            stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new NpyFormatException(path, $"cannot be opened: {FirstLine(e.Message)}");
        }
        using (stream)
        {
            try
            {
                return read(stream);
            }
            catch (IOException e)
            {
                throw new NpyFormatException(path, $"cannot be read: {FirstLine(e.Message)}");
            }
        }
    }

    // The format without the element type: accept says a descr's element size, or why it is refused.
    private static (string Descr, long[] Shape, byte[] Data) ReadRaw(Stream stream, string name, Func<string, (int Size, string? Refusal)> accept)
    {
        Span<byte> prefix = stackalloc byte[8];
        int got = ReadUpTo(stream, prefix);
        if (got < 8 || !prefix[..6].SequenceEqual(Magic))
            throw new NpyFormatException(name, "not a NumPy .npy file (expected it to start with \\x93NUMPY; write it with np.save)");
        int major = prefix[6], minor = prefix[7];
        if (major is < 1 or > 3 || minor != 0)
            throw new NpyFormatException(name, $"unsupported .npy format version {major}.{minor}; expected 1.0, 2.0 or 3.0");

        int lengthBytes = major == 1 ? 2 : 4;
        Span<byte> lengthField = stackalloc byte[4];
        if (ReadUpTo(stream, lengthField[..lengthBytes]) < lengthBytes)
            throw new NpyFormatException(name, "truncated header (the file ends inside the header length)");
        long headerLength = major == 1 ? BinaryPrimitives.ReadUInt16LittleEndian(lengthField) : BinaryPrimitives.ReadUInt32LittleEndian(lengthField);
        if (headerLength > MaxHeaderLength)
            throw new NpyFormatException(name, $"header length {headerLength} bytes is implausible (expected at most {MaxHeaderLength})");
        var headerBytes = new byte[headerLength];
        if (ReadUpTo(stream, headerBytes) < headerLength)
            throw new NpyFormatException(name, $"truncated header (expected {headerLength} bytes of header)");
        string header = major == 3 ? DecodeUtf8(headerBytes, name) : Encoding.Latin1.GetString(headerBytes);

        var (descr, fortranOrder, shape) = ParseHeader(header, name);
        if (fortranOrder)
            throw new NpyFormatException(name, "is stored in Fortran order (fortran_order: True); expected C order (save np.ascontiguousarray(x))");
        var (size, refusal) = accept(descr);
        if (refusal is not null) throw new NpyFormatException(name, refusal);

        long count;
        try { count = NpyArray.Count(shape); }
        catch (OverflowException) { throw new NpyFormatException(name, $"shape {NpyArray.ShapeText(shape)} has too many elements"); }
        long bytes = count * size;
        if (bytes > Array.MaxLength)
            throw new NpyFormatException(name, $"shape {NpyArray.ShapeText(shape)} holds {bytes} bytes; flashattn reads at most {Array.MaxLength} bytes per file");
        var data = new byte[bytes];
        int read = ReadUpTo(stream, data);
        if (read < bytes)
            throw new NpyFormatException(name, $"truncated data: shape {NpyArray.ShapeText(shape)} of '{descr}' needs {bytes} bytes, the file holds {read}");
        return (descr, shape, data);
    }

    /// <summary>
    /// Writes <paramref name="array"/> to <paramref name="path"/>, replacing it. Format 1.0 unless the header needs 2.0;
    /// <paramref name="version"/> forces 1, 2 or 3.
    /// </summary>
    public static void Write(string path, NpyArray array, int? version = null)
    {
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16);
        Write(stream, array, version);
    }

    /// <summary>Writes <paramref name="array"/> to <paramref name="stream"/>.</summary>
    public static void Write(Stream stream, NpyArray array, int? version = null)
    {
        string dict = $"{{'descr': '{array.Descr}', 'fortran_order': False, 'shape': {NpyArray.ShapeText(array.Shape)}, }}";
        int major = version ?? 1;
        if (major is < 1 or > 3) throw new ArgumentOutOfRangeException(nameof(version), version, "expected 1, 2 or 3");
        if (major == 1 && 10 + dict.Length + 1 > ushort.MaxValue) major = 2;
        int prefix = major == 1 ? 10 : 12;
        int unpadded = prefix + dict.Length + 1; // + '\n'
        int padding = (64 - unpadded % 64) % 64;
        string header = dict + new string(' ', padding) + "\n";
        byte[] headerBytes = major == 3 ? Encoding.UTF8.GetBytes(header) : Encoding.Latin1.GetBytes(header);

        Span<byte> head = stackalloc byte[12];
        Magic.CopyTo(head);
        head[6] = (byte)major;
        head[7] = 0;
        if (major == 1) BinaryPrimitives.WriteUInt16LittleEndian(head[8..], (ushort)headerBytes.Length);
        else BinaryPrimitives.WriteUInt32LittleEndian(head[8..], (uint)headerBytes.Length);
        stream.Write(head[..prefix]);
        stream.Write(headerBytes);
        stream.Write(array.Data);
    }

    /// <summary>Parses the header dict; public for tests.</summary>
    internal static (string Descr, bool FortranOrder, long[] Shape) ParseHeader(string header, string name)
    {
        object? parsed;
        try
        {
            var parser = new PyLiteralParser(header);
            parsed = parser.ParseValue();
            parser.ExpectEnd();
        }
        catch (FormatException e)
        {
            throw new NpyFormatException(name, $"malformed header ({e.Message}); expected a dict like {{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }}");
        }
        if (parsed is not Dictionary<string, object?> dict)
            throw new NpyFormatException(name, "malformed header: expected a dict with keys 'descr', 'fortran_order' and 'shape'");
        foreach (string key in new[] { "descr", "fortran_order", "shape" })
            if (!dict.ContainsKey(key))
                throw new NpyFormatException(name, $"malformed header: the key '{key}' is missing");
        if (dict["descr"] is not string descr)
            throw new NpyFormatException(name, $"structured or nested dtypes are not supported; expected a plain dtype: {NpyDescr.AcceptedText}");
        if (dict["fortran_order"] is not bool fortran)
            throw new NpyFormatException(name, "malformed header: 'fortran_order' must be True or False");
        if (dict["shape"] is not List<object?> { } dims || dims.Any(d => d is not long))
            throw new NpyFormatException(name, "malformed header: 'shape' must be a tuple of integers");
        var shape = dims.Select(d => (long)d!).ToArray();
        if (shape.Any(d => d < 0))
            throw new NpyFormatException(name, $"malformed header: negative length in shape {NpyArray.ShapeText(shape)}");
        return (descr, fortran, shape);
    }

    private static string DecodeUtf8(byte[] bytes, string name)
    {
        try { return new UTF8Encoding(false, true).GetString(bytes); }
        catch (DecoderFallbackException) { throw new NpyFormatException(name, "malformed header: not valid UTF-8 (format 3.0)"); }
    }

    private static int ReadUpTo(Stream stream, Span<byte> buffer)
    {
        int total = 0;
        while (total < buffer.Length)
        {
            int n = stream.Read(buffer[total..]);
            if (n == 0) break;
            total += n;
        }
        return total;
    }

    private static string FirstLine(string message) => message.Split('\n')[0].Trim();

    /// <summary>
    /// The subset of Python literals a .npy header uses: dicts, tuples/lists, strings, ints, True/False/None. Nesting is
    /// limited to <see cref="MaxDepth"/> levels, so a crafted header cannot exhaust the stack.
    /// </summary>
    private ref struct PyLiteralParser(string text)
    {
        /// <summary>Deepest nesting accepted: a plain header nests 2 levels (the dict, the shape), a structured dtype a few more.</summary>
        public const int MaxDepth = 32;

        private readonly string _text = text;
        private int _pos;
        private int _depth;

        public object? ParseValue()
        {
            SkipSpace();
            if (_pos >= _text.Length) throw new FormatException("unexpected end");
            char c = _text[_pos];
            if (c is '{' or '(' or '[')
            {
                if (++_depth > MaxDepth) throw new FormatException($"nested more than {MaxDepth} levels deep at offset {_pos}");
                object value = c == '{' ? ParseDict() : c == '(' ? ParseSequence('(', ')') : ParseSequence('[', ']');
                _depth--;
                return value;
            }
            if (c is '\'' or '"') return ParseString();
            if (c == '-' || char.IsAsciiDigit(c)) return ParseInt();
            if (char.IsAsciiLetter(c))
            {
                int start = _pos;
                while (_pos < _text.Length && (char.IsAsciiLetterOrDigit(_text[_pos]) || _text[_pos] == '_')) _pos++;
                string word = _text[start.._pos];
                return word switch
                {
                    "True" => true,
                    "False" => false,
                    "None" => null,
                    _ => throw new FormatException($"unexpected word '{word}' at offset {start}"),
                };
            }
            throw new FormatException($"unexpected '{c}' at offset {_pos}");
        }

        public void ExpectEnd()
        {
            SkipSpace();
            if (_pos != _text.Length) throw new FormatException($"unexpected '{_text[_pos]}' after the dict at offset {_pos}");
        }

        private Dictionary<string, object?> ParseDict()
        {
            _pos++; // {
            var dict = new Dictionary<string, object?>(StringComparer.Ordinal);
            while (true)
            {
                SkipSpace();
                if (Peek() == '}') { _pos++; return dict; }
                if (ParseValue() is not string key) throw new FormatException("dict keys must be strings");
                SkipSpace();
                if (Peek() != ':') throw new FormatException($"expected ':' at offset {_pos}");
                _pos++;
                dict[key] = ParseValue();
                SkipSpace();
                char c = Peek();
                if (c == ',') { _pos++; continue; }
                if (c == '}') { _pos++; return dict; }
                throw new FormatException($"expected ',' or '}}' at offset {_pos}");
            }
        }

        private List<object?> ParseSequence(char open, char close)
        {
            _pos++;
            var items = new List<object?>();
            while (true)
            {
                SkipSpace();
                if (Peek() == close) { _pos++; return items; }
                items.Add(ParseValue());
                SkipSpace();
                char c = Peek();
                if (c == ',') { _pos++; continue; }
                if (c == close) { _pos++; return items; }
                throw new FormatException($"expected ',' or '{close}' at offset {_pos}");
            }
        }

        private string ParseString()
        {
            char quote = _text[_pos++];
            var sb = new StringBuilder();
            while (true)
            {
                if (_pos >= _text.Length) throw new FormatException("unterminated string");
                char c = _text[_pos++];
                if (c == quote) return sb.ToString();
                if (c == '\\' && _pos < _text.Length) c = _text[_pos++];
                sb.Append(c);
            }
        }

        private long ParseInt()
        {
            int start = _pos;
            if (_text[_pos] == '-') _pos++;
            while (_pos < _text.Length && char.IsAsciiDigit(_text[_pos])) _pos++;
            if (!long.TryParse(_text.AsSpan(start, _pos - start), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long value))
                throw new FormatException($"bad integer at offset {start}");
            if (_pos < _text.Length && _text[_pos] is 'L' or 'l') _pos++; // Python 2 longs
            return value;
        }

        private char Peek() => _pos < _text.Length ? _text[_pos] : throw new FormatException("unexpected end");

        private void SkipSpace()
        {
            while (_pos < _text.Length && char.IsWhiteSpace(_text[_pos])) _pos++;
        }
    }
}
