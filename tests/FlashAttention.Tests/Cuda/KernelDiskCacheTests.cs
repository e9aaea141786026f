using FlashAttention.Cuda.Compiler;

namespace FlashAttention.Tests.Cuda;

public class KernelDiskCacheTests
{
    private static readonly string Key = new('a', 64);

    private static KernelCacheEntry Entry(string key, int cubinSize = 4096, byte fill = 0x5a) => new(key,
        [new("axpy<float>", "_Z4axpyIfEvT_PKS0_PS0_i"), new("axpy<double>", "_Z4axpyIdEvT_PKS0_PS0_i")],
        "ptxas info : Used 10 registers", TimeSpan.FromMilliseconds(1234), Enumerable.Repeat(fill, cubinSize).ToArray());

    [Fact]
    public void Entries_round_trip()
    {
        using var dir = new TempDirectory();
        var cache = new KernelDiskCache(Path.Join(dir.Path, "nested", "cache"));
        var entry = Entry(Key);
        Assert.True(cache.TryWrite(entry, out var problem), problem);
        var read = cache.TryRead(Key, out problem);
        Assert.Null(problem);
        Assert.NotNull(read);
        Assert.Equal(entry.Key, read.Key);
        Assert.Equal(entry.LoweredNames, read.LoweredNames);
        Assert.Equal(entry.Log, read.Log);
        Assert.Equal(entry.CompileTime, read.CompileTime);
        Assert.Equal(entry.Cubin, read.Cubin);
        Assert.Equal((new FileInfo(cache.PathFor(Key)).Length, 1), cache.Measure());
    }

    [Fact]
    public void A_missing_entry_is_a_quiet_miss()
    {
        using var dir = new TempDirectory();
        var cache = new KernelDiskCache(Path.Join(dir.Path, "does-not-exist-yet"));
        Assert.Null(cache.TryRead(Key, out var problem));
        Assert.Null(problem);
        Assert.Equal((0L, 0), cache.Measure());
    }

    public static TheoryData<string, int> Damage => new()
    {
        { "truncated", 0 },
        { "flipped body byte", 1 },
        { "flipped magic", 2 },
        { "wrong version", 3 },
        { "empty file", 4 },
        { "header only", 5 },
    };

    [Theory]
    [MemberData(nameof(Damage))]
    public void Damaged_entries_are_detected_and_deleted(string what, int kind)
    {
        using var dir = new TempDirectory();
        var cache = new KernelDiskCache(dir.Path);
        Assert.True(cache.TryWrite(Entry(Key), out _));
        string path = cache.PathFor(Key);
        byte[] bytes = File.ReadAllBytes(path);
        bytes = kind switch
        {
            0 => bytes[..(bytes.Length - 100)],
            1 => Flip(bytes, bytes.Length - 7),
            2 => Flip(bytes, 0),
            3 => Flip(bytes, 8),
            4 => [],
            _ => bytes[..56],
        };
        File.WriteAllBytes(path, bytes);

        Assert.Null(cache.TryRead(Key, out var problem));
        Assert.NotNull(problem);
        Assert.Contains("damaged", problem);
        Assert.False(File.Exists(path), $"{what}: the damaged entry should have been deleted");
    }

    [Fact]
    public void An_entry_under_the_wrong_name_is_refused()
    {
        using var dir = new TempDirectory();
        var cache = new KernelDiskCache(dir.Path);
        string other = new('b', 64);
        Assert.True(cache.TryWrite(Entry(Key), out _));
        File.Copy(cache.PathFor(Key), cache.PathFor(other));
        Assert.Null(cache.TryRead(other, out var problem));
        Assert.Contains("not " + other, problem);
    }

    [Fact]
    public async Task Two_concurrent_writers_of_one_key_never_expose_a_partial_entry()
    {
        using var dir = new TempDirectory();
        // Two cache objects on one folder, as two processes would have; big entries make a torn write likely if writes were not atomic.
        var writerA = new KernelDiskCache(dir.Path);
        var writerB = new KernelDiskCache(dir.Path);
        var reader = new KernelDiskCache(dir.Path);
        var entryA = Entry(Key, cubinSize: 2 << 20, fill: 0xAA);
        var entryB = Entry(Key, cubinSize: (2 << 20) + 4096, fill: 0xBB);
        int damaged = 0, reads = 0, writeFailures = 0;
        using var stop = new CancellationTokenSource();
        using var readerStarted = new ManualResetEventSlim();

        var readerTask = Task.Run(() =>
        {
            while (!stop.IsCancellationRequested || Volatile.Read(ref reads) == 0)
            {
                readerStarted.Set();
                var read = reader.TryRead(Key, out var problem);
                if (problem is not null) Interlocked.Increment(ref damaged);
                if (read is null) continue;
                Interlocked.Increment(ref reads);
                byte first = read.Cubin[0];
                if (first is not (0xAA or 0xBB) || read.Cubin.Any(b => b != first)) Interlocked.Increment(ref damaged);
            }
        });
        void Write(KernelDiskCache cache, KernelCacheEntry entry)
        {
            for (int i = 0; i < 25; i++)
                if (!cache.TryWrite(entry, out _)) Interlocked.Increment(ref writeFailures);
        }
        readerStarted.Wait();
        Parallel.Invoke(() => Write(writerA, entryA), () => Write(writerB, entryB));
        stop.Cancel();
        await readerTask;

        Assert.Equal(0, damaged);
        Assert.Equal(0, writeFailures);
        Assert.True(reads > 0);
        var final = reader.TryRead(Key, out var finalProblem);
        Assert.Null(finalProblem);
        Assert.NotNull(final);
        Assert.True(final.Cubin.SequenceEqual(entryA.Cubin) || final.Cubin.SequenceEqual(entryB.Cubin));
        Assert.Empty(Directory.GetFiles(dir.Path, "*.tmp")); // every temporary file was renamed away
        Assert.Equal(1, reader.Measure().Entries);
    }

    [Fact]
    public void Directory_resolution_order()
    {
        static Func<string, string?> Env(params (string, string)[] vars) => name => vars.FirstOrDefault(v => v.Item1 == name).Item2;
        Assert.Equal("/explicit", KernelDiskCache.ResolveDirectory(Env(("FLASHATTN_CACHE_DIR", "/explicit"), ("XDG_CACHE_HOME", "/xdg")), "/home/u"));
        Assert.Equal(Path.Join("/xdg", "flashattention"), KernelDiskCache.ResolveDirectory(Env(("XDG_CACHE_HOME", "/xdg")), "/home/u"));
        Assert.Equal(Path.Join("/home/u", ".cache", "flashattention"), KernelDiskCache.ResolveDirectory(Env(("XDG_CACHE_HOME", "relative")), "/home/u"));
        Assert.Equal(Path.Join("/home/u", ".cache", "flashattention"), KernelDiskCache.ResolveDirectory(Env(), "/home/u"));
        Assert.Equal(Path.Join("/h2", ".cache", "flashattention"), KernelDiskCache.ResolveDirectory(Env(("HOME", "/h2")), ""));
        Assert.StartsWith(Path.GetTempPath(), KernelDiskCache.ResolveDirectory(Env(), null));
    }

    [Fact]
    public void Clear_removes_entries()
    {
        using var dir = new TempDirectory();
        var cache = new KernelDiskCache(dir.Path);
        cache.TryWrite(Entry(Key), out _);
        cache.TryWrite(Entry(new string('c', 64)), out _);
        Assert.Equal(2, cache.Clear());
        Assert.Equal((0L, 0), cache.Measure());
    }

    [Fact]
    public void A_directory_in_an_entrys_place_is_reported_on_read_and_on_write_and_left_alone()
    {
        using var dir = new TempDirectory();
        var cache = new KernelDiskCache(dir.Path);
        string path = cache.PathFor(Key);
        Directory.CreateDirectory(path);
        File.WriteAllText(Path.Join(path, "someone's file"), "x");

        Assert.Null(cache.TryRead(Key, out var readProblem));
        Assert.Contains("is a directory, not a file", readProblem);
        Assert.False(cache.TryWrite(Entry(Key), out var writeProblem));
        Assert.Contains("a directory is in its place", writeProblem);
        Assert.True(File.Exists(Path.Join(path, "someone's file")), "the directory's contents must be left alone");
        Assert.Empty(Directory.GetFiles(dir.Path, "*.tmp"));
    }

    [Fact]
    public void A_writable_folder_passes_the_probe_and_keeps_no_probe_file()
    {
        using var dir = new TempDirectory();
        var cache = new KernelDiskCache(Path.Join(dir.Path, "to", "be", "created"));
        Assert.True(cache.CanWrite(out var problem), problem);
        Assert.Empty(Directory.GetFileSystemEntries(cache.Directory));
    }

    [Fact]
    public void A_file_in_the_folders_place_or_on_its_path_fails_the_probe()
    {
        using var dir = new TempDirectory();
        string file = Path.Join(dir.Path, "a-file");
        File.WriteAllText(file, "not a folder");
        Assert.False(new KernelDiskCache(file).CanWrite(out var problem));
        Assert.Contains("a file is in the folder's place", problem);
        Assert.False(new KernelDiskCache(Path.Join(file, "cache")).CanWrite(out problem));
        Assert.Contains("cannot be created", problem);
        Assert.False(new KernelDiskCache(Path.Join(file, "cache")).TryWrite(Entry(Key), out problem));
        Assert.Contains("cannot write cache entry", problem);
    }

    [UnprivilegedFact]
    public void A_read_only_folder_fails_the_probe()
    {
        using var dir = new TempDirectory();
        string folder = Path.Join(dir.Path, "read-only");
        Directory.CreateDirectory(folder);
        File.SetUnixFileMode(folder, UnixFileMode.UserRead | UnixFileMode.UserExecute);
        try
        {
            Assert.False(new KernelDiskCache(folder).CanWrite(out var problem));
            Assert.Contains("permission denied", problem);
        }
        finally
        {
            File.SetUnixFileMode(folder, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
    }

    [Fact]
    public void Warnings_are_written_once_each()
    {
        var writer = new StringWriter();
        var warn = DistinctWarnings.To(writer);
        warn("cannot write cache entry /x: permission denied");
        warn("cannot write cache entry /x: permission denied");
        warn("cache entry /y is damaged (bad magic); deleted, recompiling");
        Assert.Equal(
            "warning: FlashAttention kernel cache: cannot write cache entry /x: permission denied\n" +
            "warning: FlashAttention kernel cache: cache entry /y is damaged (bad magic); deleted, recompiling\n",
            writer.ToString().ReplaceLineEndings("\n"));
    }

    private static byte[] Flip(byte[] bytes, int index)
    {
        bytes[index] ^= 0xFF;
        return bytes;
    }
}
