using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using FlashAttention.Cli.Npy;

namespace FlashAttention.Tests.Cli;

public class NpyTests : IDisposable
{
    private readonly CliHarness _h = new();

    public void Dispose() => _h.Dispose();

    public static TheoryData<string, int> DescrsAndVersions()
    {
        var data = new TheoryData<string, int>();
        foreach (string descr in new[] { "<f4", "<f2", "<u2", "<V2", "|V2" })
        foreach (int version in new[] { 1, 2, 3 })
            data.Add(descr, version);
        return data;
    }

    [Theory]
    [MemberData(nameof(DescrsAndVersions))]
    public void RoundTripsEveryDtypeAndHeaderVersion(string descr, int version)
    {
        long[] shape = [2, 3, 4, 5];
        var array = NpyArray.Create(descr, shape);
        new Random(7).NextBytes(array.Data);
        string path = _h.PathOf($"x-{version}.npy");
        NpyFile.Write(path, array, version);

        byte[] file = File.ReadAllBytes(path);
        Assert.Equal(version, file[6]);
        int headerEnd = version == 1 ? 10 + BinaryPrimitives.ReadUInt16LittleEndian(file.AsSpan(8)) : 12 + (int)BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(8));
        Assert.Equal(0, headerEnd % 64);
        Assert.Equal((byte)'\n', file[headerEnd - 1]);

        var back = NpyFile.Read(path);
        Assert.Equal(descr, back.Descr);
        Assert.Equal(shape, back.Shape);
        Assert.Equal(array.Data, back.Data);
    }

    [Fact]
    public void ElementTypesMapToTheLibrarysTypes()
    {
        Assert.Equal(NpyElementType.Float32, NpyFile.Read(Write("a.npy", "<f4", [3])).ElementType);
        Assert.Equal(NpyElementType.Float16, NpyFile.Read(Write("b.npy", "<f2", [3])).ElementType);
        Assert.Equal(NpyElementType.BFloat16, NpyFile.Read(Write("c.npy", "<u2", [3])).ElementType);
        Assert.Equal(NpyElementType.BFloat16, NpyFile.Read(Write("d.npy", "<V2", [3])).ElementType);
    }

    [Fact]
    public void ValuesSurviveAsFloats()
    {
        var array = NpyArray.Create("<f4", [4]);
        float[] values = [1.5f, -2.25f, 3e-8f, float.MaxValue];
        values.CopyTo(array.AsSpan<float>());
        string path = _h.PathOf("v.npy");
        NpyFile.Write(path, array);
        Assert.Equal(values, NpyFile.Read(path).AsSpan<float>().ToArray());
    }

    [Theory]
    [InlineData("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", new long[] { 3 })]
    [InlineData("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", new long[0])]
    [InlineData("{\"descr\": \"<f4\", \"shape\": (2, 3), \"fortran_order\": False}", new long[] { 2, 3 })]
    [InlineData("{'descr':'<f4','fortran_order':False,'shape':(2L, 3L)}", new long[] { 2, 3 })]
    public void ParsesHeaderVariantsNumPyAndOthersWrite(string dict, long[] shape)
    {
        string path = _h.PathOf("h.npy");
        File.WriteAllBytes(path, RawFile(1, dict, new byte[4 * Math.Max(1, shape.Aggregate(1L, (a, b) => a * b))]));
        Assert.Equal(shape, NpyFile.Read(path).Shape);
    }

    [Theory]
    [InlineData("garbage", "not a NumPy .npy file")]
    [InlineData("version", "unsupported .npy format version 9.0")]
    [InlineData("short-header", "truncated header")]
    [InlineData("dict-syntax", "malformed header")]
    [InlineData("missing-shape", "the key 'shape' is missing")]
    [InlineData("structured", "structured or nested dtypes are not supported")]
    [InlineData("fortran", "Fortran order")]
    [InlineData("float64", "dtype '<f8' (float64) is not supported; expected '<f4' (float32)")]
    [InlineData("big-endian", "big-endian")]
    [InlineData("int32", "dtype '<i4' (int32) is not supported")]
    [InlineData("truncated-data", "truncated data: shape (2, 3) of '<f4' needs 24 bytes, the file holds 20")]
    [InlineData("negative", "negative length")]
    public void RefusesMalformedFilesNamingTheFile(string kind, string expected)
    {
        string path = _h.PathOf(kind + ".npy");
        byte[] bytes = kind switch
        {
            "garbage" => Encoding.ASCII.GetBytes("this is not numpy at all"),
            "version" => Version(9),
            "short-header" => RawFile(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", [])[..20],
            "dict-syntax" => RawFile(1, "{'descr': '<f4' 'fortran_order': False}", new byte[24]),
            "missing-shape" => RawFile(1, "{'descr': '<f4', 'fortran_order': False}", new byte[24]),
            "structured" => RawFile(1, "{'descr': [('a', '<f4'), ('b', '<f4')], 'fortran_order': False, 'shape': (2,), }", new byte[16]),
            "fortran" => RawFile(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", new byte[24]),
            "float64" => RawFile(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", new byte[48]),
            "big-endian" => RawFile(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }", new byte[24]),
            "int32" => RawFile(1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3), }", new byte[24]),
            "truncated-data" => RawFile(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", new byte[20]),
            "negative" => RawFile(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-2, 3), }", new byte[24]),
            _ => throw new ArgumentException(kind),
        };
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<NpyFormatException>(() => NpyFile.Read(path));
        Assert.StartsWith(path + ": ", e.Message);
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    /// <summary>A header whose shape is a tuple nested <paramref name="depth"/> levels deep, in format 2.0 (4-byte header length).</summary>
    internal static byte[] NestedHeaderFile(int depth) =>
        RawFile(2, "{'descr': '<f4', 'fortran_order': False, 'shape': " + new string('(', depth) + new string(')', depth) + ", }", []);

    [Fact]
    public void A_header_nested_forty_thousand_levels_deep_is_refused_in_one_line()
    {
        // Recursing once per level would overflow the stack (a crash no handler catches); the parser stops at 32.
        string path = _h.PathOf("nested.npy");
        File.WriteAllBytes(path, NestedHeaderFile(40_000));
        var e = Assert.Throws<NpyFormatException>(() => NpyFile.Read(path));
        Assert.Contains("malformed header (nested more than 32 levels deep", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        // At the limit itself the nesting is accepted (and then refused for what it is: a shape that is no tuple of integers).
        File.WriteAllBytes(path, NestedHeaderFile(31));
        Assert.Contains("'shape' must be a tuple of integers", Assert.Throws<NpyFormatException>(() => NpyFile.Read(path)).Message);
    }

    [Fact]
    public void Run_with_a_deeply_nested_header_exits_2_with_one_line()
    {
        File.WriteAllBytes(_h.PathOf("q.npy"), NestedHeaderFile(40_000));
        _h.Run("run", "--q", _h.PathOf("q.npy"), "--k", _h.PathOf("q.npy"), "--v", _h.PathOf("q.npy"), "--out", _h.PathOf("o.npy"))
            .AssertOneLineError(2, "q.npy", "nested more than 32 levels deep");
        Assert.False(File.Exists(_h.PathOf("o.npy")));
    }

    [Fact]
    public void Any_damage_to_a_header_is_an_npy_error()
    {
        // Random edits of a valid file (bytes replaced by header syntax or anything, bytes cut out, the file cut short):
        // each read succeeds or raises NpyFormatException, never anything else (which the CLI would report as a crash).
        byte[] valid = RawFile(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", new byte[24]);
        const string syntax = "{}()[]'\",:-0123456789LTFNe \\";
        var rng = new Random(23);
        for (int trial = 0; trial < 3000; trial++)
        {
            var bytes = new List<byte>(valid);
            for (int edit = rng.Next(1, 4); edit > 0; edit--)
            {
                int at = rng.Next(bytes.Count);
                switch (rng.Next(4))
                {
                    case 0: bytes[at] = (byte)syntax[rng.Next(syntax.Length)]; break;
                    case 1: bytes[at] = (byte)rng.Next(256); break;
                    case 2: bytes.RemoveAt(at); break;
                    default: bytes.RemoveRange(at, bytes.Count - at); break;
                }
                if (bytes.Count == 0) break;
            }
            try
            {
                NpyFile.Read(new MemoryStream([.. bytes]), "fuzzed.npy");
            }
            catch (NpyFormatException e)
            {
                Assert.DoesNotContain('\n', e.Message);
            }
        }
    }

    [Fact]
    public void MissingFileIsAnNpyError()
    {
        string path = _h.PathOf("nope.npy");
        var e = Assert.Throws<NpyFormatException>(() => NpyFile.Read(path));
        Assert.Contains("cannot be opened", e.Message);
        Assert.Contains("nope.npy", e.Message);
    }

    private string Write(string name, string descr, long[] shape)
    {
        string path = _h.PathOf(name);
        NpyFile.Write(path, NpyArray.Create(descr, shape));
        return path;
    }

    private static byte[] Version(byte major)
    {
        var bytes = RawFile(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", new byte[4]);
        bytes[6] = major;
        return bytes;
    }

    /// <summary>A .npy file with an arbitrary header dict, padded as NumPy pads it.</summary>
    internal static byte[] RawFile(int major, string dict, byte[] data)
    {
        int prefix = major == 1 ? 10 : 12;
        int padding = (64 - (prefix + dict.Length + 1) % 64) % 64;
        byte[] header = Encoding.Latin1.GetBytes(dict + new string(' ', padding) + "\n");
        var ms = new MemoryStream();
        ms.Write([0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', (byte)major, 0]);
        var len = new byte[prefix - 8];
        if (major == 1) BinaryPrimitives.WriteUInt16LittleEndian(len, (ushort)header.Length);
        else BinaryPrimitives.WriteUInt32LittleEndian(len, (uint)header.Length);
        ms.Write(len);
        ms.Write(header);
        ms.Write(data);
        return ms.ToArray();
    }
}
