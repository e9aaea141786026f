using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace FlashAttention.Cuda.Compiler;

/// <summary>One cache entry: a compiled module and what is needed to use it without recompiling.</summary>
internal sealed record KernelCacheEntry(string Key, IReadOnlyList<KeyValuePair<string, string>> LoweredNames, string Log, TimeSpan CompileTime, byte[] Cubin);

/// <summary>
/// The on-disk cubin cache: one file per key in <see cref="Directory"/>. Entries are written to a temporary file in
/// the same folder and renamed into place (atomic on POSIX file systems), so a reader in any process sees either no
/// entry or a complete one. Each file carries a header (magic, format version, body length, SHA-256 of the body) so a
/// truncated or damaged entry is detected, deleted and recompiled rather than loaded.
/// </summary>
/// <remarks>
/// File layout (little-endian): 8-byte magic <c>FACUBIN1</c>; int32 format version; int32 reserved (0); int64 body
/// length; 32-byte SHA-256 of the body; body = key, lowered names (count, then expression/name pairs), NVRTC log,
/// compile time (ticks), cubin (length-prefixed). The lowered names live in the hashed body, so they are covered by
/// the same integrity check as the cubin, and the stored key must equal the file's key.
/// </remarks>
internal sealed class KernelDiskCache
{
    /// <summary>Bumped whenever the file layout or the key recipe changes; part of every key too.</summary>
    public const int FormatVersion = 1;

    /// <summary>Environment variable that names the cache folder outright.</summary>
    public const string DirectoryVariable = "FLASHATTN_CACHE_DIR";

    /// <summary>File extension of entries.</summary>
    public const string EntryExtension = ".fakc";

    private const int HeaderSize = 8 + 4 + 4 + 8 + 32;
    private static ReadOnlySpan<byte> Magic => "FACUBIN1"u8;

    private int _staleSweepDone;

    /// <summary>A cache in <paramref name="directory"/> (created on first write).</summary>
    public KernelDiskCache(string directory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        Directory = Path.GetFullPath(directory);
    }

    /// <summary>The cache in the folder <see cref="ResolveDirectory"/> picks for this process.</summary>
    public static KernelDiskCache CreateDefault() => new(ResolveDirectory(Environment.GetEnvironmentVariable, Environment.GetFolderPath(Environment.SpecialFolder.UserProfile)));

    /// <summary>The cache folder.</summary>
    public string Directory { get; }

    /// <summary>
    /// <c>$FLASHATTN_CACHE_DIR</c> if set; else <c>$XDG_CACHE_HOME/flashattention</c>; else
    /// <c>~/.cache/flashattention</c>; else (no home) a folder under the system temp directory.
    /// </summary>
    public static string ResolveDirectory(Func<string, string?> environment, string? homeDirectory)
    {
        if (environment(DirectoryVariable) is { Length: > 0 } explicitDir && !string.IsNullOrWhiteSpace(explicitDir)) return explicitDir.Trim();
        if (environment("XDG_CACHE_HOME") is { Length: > 0 } xdg && Path.IsPathRooted(xdg.Trim())) return Path.Join(xdg.Trim(), "flashattention");
        if (string.IsNullOrWhiteSpace(homeDirectory)) homeDirectory = environment("HOME");
        if (!string.IsNullOrWhiteSpace(homeDirectory)) return Path.Join(homeDirectory, ".cache", "flashattention");
        return Path.Join(Path.GetTempPath(), "flashattention-cache");
    }

    /// <summary>The file an entry with this key lives in.</summary>
    public string PathFor(string key) => Path.Join(Directory, key + EntryExtension);

    /// <summary>
    /// Reads the entry for <paramref name="key"/>. Returns null when there is none, or when the file is damaged: it is
    /// then deleted (so the caller's recompile replaces it) and <paramref name="problem"/> says what was wrong.
    /// </summary>
    public KernelCacheEntry? TryRead(string key, out string? problem)
    {
        problem = null;
        string path = PathFor(key);
        if (System.IO.Directory.Exists(path))
        {
            problem = $"cache entry {path} is a directory, not a file; remove it (until then this kernel is compiled anew in every process)";
            return null;
        }
        var info = new FileInfo(path);
        if (!info.Exists) return null;
        // An empty entry is damaged; a FIFO or device also reports 0 bytes, and opening one could block: neither is read.
        if (info.Length == 0)
        {
            problem = $"cache entry {path} is damaged (0 bytes: empty, or not a regular file); deleted, recompiling";
            TryDelete(path);
            return null;
        }
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            problem = $"cannot read cache entry {path}: {e.Message}";
            return null;
        }
        try
        {
            return Deserialize(bytes, key);
        }
        catch (InvalidDataException e)
        {
            problem = $"cache entry {path} is damaged ({e.Message}); deleted, recompiling";
            TryDelete(path);
            return null;
        }
    }

    /// <summary>
    /// Writes an entry atomically (temporary file in the same folder, flushed to disk, renamed over the final name).
    /// Returns false with <paramref name="problem"/> set when the cache cannot be written (read-only disk, say): a
    /// cache that cannot be written must never fail the compile that produced the entry.
    /// </summary>
    public bool TryWrite(KernelCacheEntry entry, out string? problem)
    {
        problem = null;
        string final = PathFor(entry.Key);
        string temp = Path.Join(Directory, $".{entry.Key}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            System.IO.Directory.CreateDirectory(Directory);
            SweepStaleTemporaries();
            byte[] bytes = Serialize(entry);
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                stream.Write(bytes);
                stream.Flush(flushToDisk: true); // after a crash the renamed file must hold the bytes, not a hole
            }
            File.Move(temp, final, overwrite: true);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            problem = System.IO.Directory.Exists(final)
                ? $"cannot write cache entry {final}: a directory is in its place; remove it"
                : $"cannot write cache entry {final}: {WriteFailure(e)}";
            TryDelete(temp);
            return false;
        }
    }

    /// <summary>
    /// Whether entries can be written here: creates the folder if needed and writes and deletes a probe file, so a
    /// read-only, immutable or missing-and-uncreatable folder (or a file in its place) is found before any compile.
    /// </summary>
    public bool CanWrite(out string? problem)
    {
        problem = null;
        string probe = Path.Join(Directory, $".probe.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            System.IO.Directory.CreateDirectory(Directory);
            using (new FileStream(probe, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.DeleteOnClose)) { }
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            problem = $"the kernel cache folder {Directory} cannot be written: {WriteFailure(e)}";
            TryDelete(probe);
            return false;
        }
    }

    // Why a write into the folder failed, without the temporary file's name that .NET's messages carry.
    private string WriteFailure(Exception e) => e switch
    {
        _ when File.Exists(Directory) => "a file is in the folder's place",
        DirectoryNotFoundException => "the folder cannot be created (a part of its path is missing or is a file)",
        UnauthorizedAccessException => "permission denied (a read-only or immutable folder?)",
        _ => e.Message.Split(" : '")[0].TrimEnd('.'),
    };

    /// <summary>Total bytes and number of entries in the folder (0, 0 when it does not exist).</summary>
    public (long Bytes, int Entries) Measure()
    {
        long bytes = 0;
        int entries = 0;
        try
        {
            if (!System.IO.Directory.Exists(Directory)) return (0, 0);
            foreach (var file in new DirectoryInfo(Directory).EnumerateFiles("*" + EntryExtension))
            {
                bytes += file.Length;
                entries++;
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
        return (bytes, entries);
    }

    /// <summary>Deletes every entry; returns how many were deleted.</summary>
    public int Clear()
    {
        if (!System.IO.Directory.Exists(Directory)) return 0;
        int count = 0;
        foreach (string file in System.IO.Directory.EnumerateFiles(Directory, "*" + EntryExtension))
            if (TryDelete(file)) count++;
        return count;
    }

    /// <summary>The bytes of an entry file.</summary>
    internal static byte[] Serialize(KernelCacheEntry entry)
    {
        using var body = new MemoryStream();
        using (var writer = new BinaryWriter(body, Encoding.UTF8, leaveOpen: true))
        {
            writer.Write(entry.Key);
            writer.Write(entry.LoweredNames.Count);
            foreach (var (expression, lowered) in entry.LoweredNames)
            {
                writer.Write(expression);
                writer.Write(lowered);
            }
            writer.Write(entry.Log);
            writer.Write(entry.CompileTime.Ticks);
            writer.Write(entry.Cubin.Length);
            writer.Write(entry.Cubin);
        }
        byte[] bodyBytes = body.ToArray();
        var file = new byte[HeaderSize + bodyBytes.Length];
        Magic.CopyTo(file);
        BinaryPrimitives.WriteInt32LittleEndian(file.AsSpan(8), FormatVersion);
        BinaryPrimitives.WriteInt32LittleEndian(file.AsSpan(12), 0);
        BinaryPrimitives.WriteInt64LittleEndian(file.AsSpan(16), bodyBytes.Length);
        SHA256.HashData(bodyBytes, file.AsSpan(24, 32));
        bodyBytes.CopyTo(file, HeaderSize);
        return file;
    }

    /// <summary>Parses and verifies an entry file; throws <see cref="InvalidDataException"/> saying what is wrong.</summary>
    internal static KernelCacheEntry Deserialize(ReadOnlySpan<byte> file, string expectedKey)
    {
        if (file.Length < HeaderSize) throw new InvalidDataException($"{file.Length} bytes is shorter than the {HeaderSize}-byte header");
        if (!file[..8].SequenceEqual(Magic)) throw new InvalidDataException("bad magic");
        int version = BinaryPrimitives.ReadInt32LittleEndian(file[8..]);
        if (version != FormatVersion) throw new InvalidDataException($"format version {version}, expected {FormatVersion}");
        long length = BinaryPrimitives.ReadInt64LittleEndian(file[16..]);
        if (length != file.Length - HeaderSize) throw new InvalidDataException($"body is {file.Length - HeaderSize} bytes, header says {length} (truncated?)");
        var body = file[HeaderSize..];
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(body, hash);
        if (!hash.SequenceEqual(file.Slice(24, 32))) throw new InvalidDataException("SHA-256 of the body does not match the header");
        try
        {
            using var reader = new BinaryReader(new MemoryStream(body.ToArray()), Encoding.UTF8);
            string key = reader.ReadString();
            if (key != expectedKey) throw new InvalidDataException($"entry holds key {key}, not {expectedKey}");
            int count = reader.ReadInt32();
            if (count is < 0 or > 100_000) throw new InvalidDataException($"implausible name count {count}");
            var names = new List<KeyValuePair<string, string>>(count);
            for (int i = 0; i < count; i++) names.Add(new(reader.ReadString(), reader.ReadString()));
            string log = reader.ReadString();
            var compileTime = TimeSpan.FromTicks(reader.ReadInt64());
            int cubinLength = reader.ReadInt32();
            if (cubinLength <= 0 || cubinLength != reader.BaseStream.Length - reader.BaseStream.Position)
                throw new InvalidDataException($"cubin length {cubinLength} does not fit the body");
            byte[] cubin = reader.ReadBytes(cubinLength);
            return new KernelCacheEntry(key, names, log, compileTime, cubin);
        }
        catch (EndOfStreamException)
        {
            throw new InvalidDataException("body ends early");
        }
    }

    /// <summary>Temporary files older than an hour are left-overs of processes that died mid-write: remove them, once per instance.</summary>
    private void SweepStaleTemporaries()
    {
        if (Interlocked.Exchange(ref _staleSweepDone, 1) != 0) return;
        try
        {
            foreach (var file in new DirectoryInfo(Directory).EnumerateFiles(".*.tmp"))
                if (DateTime.UtcNow - file.LastWriteTimeUtc > TimeSpan.FromHours(1)) TryDelete(file.FullName);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
    }

    private static bool TryDelete(string path)
    {
        try
        {
            File.Delete(path);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }
}
