using System.Globalization;
using System.Text.Json.Serialization;

namespace DiffusionCache.Sharding;

/// <summary>
/// Shard <see cref="Index"/> of <see cref="Count"/>: one task's deterministic share of a run's work items. Items are
/// split into <see cref="Count"/> contiguous ranges whose sizes differ by at most one, so every item belongs to exactly
/// one shard and the shards, read in index order, list the items in their canonical order.
/// </summary>
/// <param name="Index">I, 0-based: 0..Count-1.</param>
/// <param name="Count">N, the number of shards; at least 1.</param>
public readonly record struct Shard(int Index, int Count)
{
    /// <summary>The whole run as one shard (0/1): what a single-process run does.</summary>
    public static Shard Whole => new(0, 1);

    /// <summary>Whether this is the only shard (0/1).</summary>
    [JsonIgnore]
    public bool IsWhole => Count == 1;

    /// <summary>Parses <c>I/N</c> (0 &lt;= I &lt; N).</summary>
    /// <exception cref="DiffusionCacheException">Malformed, or I out of range.</exception>
    public static Shard Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var parts = text.Split('/');
        if (parts.Length != 2
            || !int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out int index)
            || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int count))
            throw new DiffusionCacheException($"--shard '{text}': expected I/N with whole numbers, e.g. 0/4 (shard 0 of 4)");
        var shard = new Shard(index, count);
        shard.Validate();
        return shard;
    }

    /// <summary>Checks 0 &lt;= I &lt; N and N &gt;= 1.</summary>
    /// <exception cref="DiffusionCacheException">Out of range.</exception>
    public void Validate()
    {
        if (Count < 1) throw new DiffusionCacheException($"shard {this}: the shard count must be at least 1");
        if (Index < 0 || Index >= Count)
            throw new DiffusionCacheException($"shard {this}: the index must be 0..{Count - 1} (shards are numbered from 0)");
    }

    /// <summary>This shard's items of <paramref name="items"/>: the half-open range [Start, End), contiguous, with
    /// Start = floor(items * I / N).</summary>
    /// <param name="items">The run's number of work items, in canonical order.</param>
    public (int Start, int End) Range(int items)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(items);
        Validate();
        return ((int)((long)items * Index / Count), (int)((long)items * (Index + 1) / Count));
    }

    /// <summary>The file-name stem of this shard's partial result, <c>shard-0002-of-0004</c>.</summary>
    [JsonIgnore]
    public string FileStem => string.Create(CultureInfo.InvariantCulture, $"shard-{Index:D4}-of-{Count:D4}");

    /// <summary><c>I/N</c>.</summary>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Index}/{Count}");
}
