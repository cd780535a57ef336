namespace DiffusionCache.Caching;

/// <summary>What a cache policy did: per block path, how many evaluations were computed and how many answered from
/// the cache (of those, how many forecast rather than reused as stored), and the largest amount of memory its cache
/// held at once.</summary>
public sealed class CacheStatistics
{
    private readonly Dictionary<string, (long Computed, long Reused)> _blocks = new(StringComparer.Ordinal);
    private readonly List<string> _order = [];
    private readonly Dictionary<string, long> _forecast = new(StringComparer.Ordinal);

    /// <summary>The most bytes of tensor data the cache held at once (as reported through
    /// <see cref="ObserveCacheBytes"/>); 0 if nothing was ever cached.</summary>
    public long PeakCacheBytes { get; private set; }

    /// <summary>The block paths counted so far (diffusers module paths, e.g. <c>up_blocks.1.attentions.2</c>), in
    /// the order they were first seen.</summary>
    public IReadOnlyList<string> Blocks => _order;

    /// <summary>The computed and reused evaluation counts of the block at <paramref name="path"/>; (0, 0) for a
    /// path never counted.</summary>
    public (long Computed, long Reused) this[string path] => _blocks.GetValueOrDefault(path);

    /// <summary>How many of the block's answers from the cache were forecast (extrapolated, order ≥ 1) rather than
    /// reused as stored; included in its reused count.</summary>
    public long ForecastOf(string path) => _forecast.GetValueOrDefault(path);

    /// <summary>Forecast answers summed over all tracked blocks (included in <see cref="TotalReused"/>).</summary>
    public long TotalForecast => _forecast.Values.Sum();

    /// <summary>Evaluations actually computed, summed over all tracked blocks.</summary>
    public long TotalComputed => _blocks.Values.Sum(v => v.Computed);
    /// <summary>Evaluations answered from the cache instead of computed, summed over all tracked blocks.</summary>
    public long TotalReused => _blocks.Values.Sum(v => v.Reused);

    /// <summary>Fraction of the tracked block evaluations answered from the cache.</summary>
    public double ReusedFraction => TotalComputed + TotalReused == 0 ? 0 : (double)TotalReused / (TotalComputed + TotalReused);

    /// <summary>Records one evaluation of the block at <paramref name="path"/> that was computed.</summary>
    public void Computed(string path) => Count(path, 1, 0);
    /// <summary>Records one evaluation of the block at <paramref name="path"/> answered from the cache.</summary>
    public void Reused(string path) => Count(path, 0, 1);
    /// <summary>Records one evaluation of the block at <paramref name="path"/> answered by extrapolating cached
    /// values (counted as reused, and as forecast).</summary>
    public void Forecast(string path)
    {
        Count(path, 0, 1);
        _forecast[path] = _forecast.GetValueOrDefault(path) + 1;
    }

    /// <summary>Reports how many bytes the cache holds now; <see cref="PeakCacheBytes"/> keeps the maximum.</summary>
    public void ObserveCacheBytes(long bytes) => PeakCacheBytes = Math.Max(PeakCacheBytes, bytes);

    private void Count(string path, long computed, long reused)
    {
        if (!_blocks.TryGetValue(path, out var v)) _order.Add(path);
        _blocks[path] = (v.Computed + computed, v.Reused + reused);
    }
}
