using System.Globalization;
using System.Text.Json;

namespace DiffusionCache.Sharding;

/// <summary>What every partial result file starts with: its kind (<c>profile</c>, <c>eval</c>), its shard and the
/// descriptor of the run it belongs to (model, solver, steps, seeds, shard count, ...), all as strings.</summary>
/// <param name="Kind">The workload.</param>
/// <param name="Shard">Which share of the run's work the file holds.</param>
/// <param name="Run">The run descriptor: shards merge only when these agree key for key.</param>
/// <param name="Path">The file it was read from.</param>
public sealed record ShardHeader(string Kind, Shard Shard, IReadOnlyDictionary<string, string> Run, string Path);

/// <summary>Done and missing shards of one run.</summary>
/// <param name="Kind">The workload.</param>
/// <param name="Count">N, the run's shard count.</param>
/// <param name="Done">The shards whose partial result exists, in index order.</param>
/// <param name="Missing">The shard indices with no partial result.</param>
public sealed record ShardStatus(string Kind, int Count, IReadOnlyList<ShardHeader> Done, IReadOnlyList<int> Missing)
{
    /// <summary>Every shard is done.</summary>
    public bool Complete => Missing.Count == 0;
}

/// <summary>
/// Naming, discovery and consistency of partial results. A shard writes <c>{kind}.shard-IIII-of-NNNN.json</c> (and
/// any companion files) into its output folder; the JSON is written last and atomically, so its presence means the
/// shard is done. Merging requires one file per index 0..N-1, all of one kind and one run descriptor.
/// </summary>
public static class ShardFiles
{
    /// <summary>The partial result file of <paramref name="shard"/> of a <paramref name="kind"/> run in
    /// <paramref name="folder"/>.</summary>
    public static string PartialPath(string folder, string kind, Shard shard) =>
        System.IO.Path.Combine(folder, $"{kind}.{shard.FileStem}.json");

    /// <summary>Writes the header fields (<c>kind</c>, <c>shard</c>, <c>run</c>) as the first properties of a
    /// partial result object.</summary>
    public static void WriteHeader(Utf8JsonWriter writer, string kind, Shard shard, IReadOnlyDictionary<string, string> run)
    {
        ArgumentNullException.ThrowIfNull(writer);
        ArgumentNullException.ThrowIfNull(run);
        writer.WriteString("kind", kind);
        writer.WriteStartObject("shard");
        writer.WriteNumber("index", shard.Index);
        writer.WriteNumber("count", shard.Count);
        writer.WriteEndObject();
        writer.WriteStartObject("run");
        foreach (var (key, value) in run) writer.WriteString(key, value);
        writer.WriteEndObject();
    }

    /// <summary>Reads the header of a partial result file.</summary>
    /// <exception cref="DiffusionCacheException">The file is missing or has no valid header; the message names
    /// it.</exception>
    public static ShardHeader ReadHeader(string path)
    {
        if (!File.Exists(path)) throw new DiffusionCacheException($"{path}: partial result not found");
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            return ReadHeader(doc.RootElement, path);
        }
        catch (JsonException e)
        {
            throw new DiffusionCacheException($"{path}: not a partial result ({e.Message})", e);
        }
    }

    /// <summary>Reads the header from a parsed partial result.</summary>
    /// <exception cref="DiffusionCacheException">No valid header.</exception>
    public static ShardHeader ReadHeader(JsonElement root, string path)
    {
        try
        {
            string kind = root.GetProperty("kind").GetString() ?? throw new KeyNotFoundException("kind");
            var s = root.GetProperty("shard");
            var shard = new Shard(s.GetProperty("index").GetInt32(), s.GetProperty("count").GetInt32());
            shard.Validate();
            var run = new SortedDictionary<string, string>(StringComparer.Ordinal);
            foreach (var p in root.GetProperty("run").EnumerateObject()) run[p.Name] = p.Value.GetString() ?? "";
            return new ShardHeader(kind, shard, run, path);
        }
        catch (Exception e) when (e is KeyNotFoundException or InvalidOperationException or FormatException or DiffusionCacheException)
        {
            throw new DiffusionCacheException($"{path}: not a partial result (no valid kind/shard/run header: {e.Message})", e);
        }
    }

    /// <summary>The headers of every partial result file (<c>*.shard-*-of-*.json</c>) directly in the folders, in
    /// folder order and then by name.</summary>
    /// <exception cref="DiffusionCacheException">A folder is missing, or a file has no valid header.</exception>
    public static IReadOnlyList<ShardHeader> Find(IEnumerable<string> folders)
    {
        ArgumentNullException.ThrowIfNull(folders);
        var headers = new List<ShardHeader>();
        foreach (var folder in folders)
        {
            if (!Directory.Exists(folder)) throw new DiffusionCacheException($"{folder}: shard folder not found");
            foreach (var file in Directory.EnumerateFiles(folder, "*.shard-*-of-*.json").Order(StringComparer.Ordinal))
                headers.Add(ReadHeader(file));
        }
        return headers;
    }

    /// <summary>The first difference between two run descriptors, as <c>key: 'a' vs 'b'</c>, or null when they
    /// agree.</summary>
    public static string? Mismatch(IReadOnlyDictionary<string, string> a, IReadOnlyDictionary<string, string> b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        foreach (var key in a.Keys.Union(b.Keys).Order(StringComparer.Ordinal))
        {
            a.TryGetValue(key, out var x);
            b.TryGetValue(key, out var y);
            if (!string.Equals(x, y, StringComparison.Ordinal)) return $"{key}: '{x ?? "(none)"}' vs '{y ?? "(none)"}'";
        }
        return null;
    }

    /// <summary>Groups the partial results of one run: all of one kind, one shard count and one run descriptor.
    /// </summary>
    /// <exception cref="DiffusionCacheException">No partial results, shards of different runs (the message names the
    /// files and the first mismatch), or one shard index found twice.</exception>
    public static ShardStatus Status(IReadOnlyList<ShardHeader> headers)
    {
        ArgumentNullException.ThrowIfNull(headers);
        if (headers.Count == 0) throw new DiffusionCacheException("no partial results (*.shard-*-of-*.json) in the given folders");
        var first = headers[0];
        foreach (var h in headers.Skip(1))
        {
            if (h.Kind != first.Kind)
                throw new DiffusionCacheException($"shards of different runs: {first.Path} is a {first.Kind} shard, {h.Path} a {h.Kind} shard");
            if (h.Shard.Count != first.Shard.Count)
                throw new DiffusionCacheException($"shards of different runs: shard count: {first.Shard.Count} ({first.Path}) vs {h.Shard.Count} ({h.Path})");
            if (Mismatch(first.Run, h.Run) is string diff)
                throw new DiffusionCacheException($"shards of different runs: {first.Path} and {h.Path} differ in {diff}");
        }
        foreach (var group in headers.GroupBy(h => h.Shard.Index))
            if (group.Count() > 1)
                throw new DiffusionCacheException($"shard {group.Key}/{first.Shard.Count} is given twice: {string.Join(", ", group.Select(h => h.Path))}");
        var done = headers.OrderBy(h => h.Shard.Index).ToList();
        var missing = Enumerable.Range(0, first.Shard.Count).Except(done.Select(h => h.Shard.Index)).ToList();
        return new ShardStatus(first.Kind, first.Shard.Count, done, missing);
    }

    /// <summary>The partial results of one complete run, in shard order.</summary>
    /// <exception cref="DiffusionCacheException">As <see cref="Status"/>, or a shard is missing (the message lists
    /// which).</exception>
    public static IReadOnlyList<ShardHeader> RequireComplete(IReadOnlyList<ShardHeader> headers)
    {
        var status = Status(headers);
        if (!status.Complete)
            throw new DiffusionCacheException(string.Create(CultureInfo.InvariantCulture,
                $"{status.Missing.Count} of {status.Count} {status.Kind} shards missing: {string.Join(", ", status.Missing.Select(i => $"{i}/{status.Count}"))} (run them, or see 'merge --status')"));
        return status.Done;
    }

    /// <summary>Whether <paramref name="shard"/> of the run <paramref name="run"/> is already done in
    /// <paramref name="folder"/> (a re-run skips it).</summary>
    /// <exception cref="DiffusionCacheException">The file exists but belongs to a different run (the message names
    /// the mismatch).</exception>
    public static bool IsDone(string folder, string kind, Shard shard, IReadOnlyDictionary<string, string> run)
    {
        string path = PartialPath(folder, kind, shard);
        if (!File.Exists(path)) return false;
        var header = ReadHeader(path);
        if (header.Kind != kind || header.Shard != shard)
            throw new DiffusionCacheException($"{path}: holds {header.Kind} shard {header.Shard}, expected {kind} shard {shard}");
        if (Mismatch(header.Run, run) is string diff)
            throw new DiffusionCacheException($"{path}: a shard of a different run is already there ({diff}); use another --out folder");
        return true;
    }
}
