namespace DiffusionCache.Caching;

/// <summary>What a cache policy did: per block path, how many evaluations were computed and how many reused, and
/// the largest amount of memory its cache held at once.</summary>
public sealed class CacheStatistics
{
    private readonly Dictionary<string, (long Computed, long Reused)> _blocks = new(StringComparer.Ordinal);
    private readonly List<string> _order = [];

    public long PeakCacheBytes { get; private set; }

    public IReadOnlyList<string> Blocks => _order;

    public (long Computed, long Reused) this[string path] => _blocks.GetValueOrDefault(path);

    public long TotalComputed => _blocks.Values.Sum(v => v.Computed);
    public long TotalReused => _blocks.Values.Sum(v => v.Reused);

    /// <summary>Fraction of the tracked block evaluations answered from the cache.</summary>
    public double ReusedFraction => TotalComputed + TotalReused == 0 ? 0 : (double)TotalReused / (TotalComputed + TotalReused);

    public void Computed(string path) => Count(path, 1, 0);
    public void Reused(string path) => Count(path, 0, 1);

    public void ObserveCacheBytes(long bytes) => PeakCacheBytes = Math.Max(PeakCacheBytes, bytes);

    private void Count(string path, long computed, long reused)
    {
        if (!_blocks.TryGetValue(path, out var v)) _order.Add(path);
        _blocks[path] = (v.Computed + computed, v.Reused + reused);
    }
}
