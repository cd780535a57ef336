using System.Globalization;
using System.Text.Json;
using DiffusionCache.Formats;
using DiffusionCache.Sharding;

namespace DiffusionCache.Caching.BlockCaching;

/// <summary>
/// A partial profile: the generations g in [Start, End) of one shard of a P x S profile (their per-step L1_rel
/// tables, the sufficient statistics of the mean and std), with the run's header (model, solver, timesteps, blocks, ...)
/// and a run descriptor. <see cref="Merge"/> concatenates complete shards in g order and aggregates them with
/// <see cref="BlockProfile.Aggregate"/>, the same code over the same values in the same order as a single-process
/// run, so the merged profile equals it exactly. Saved as <c>profile.shard-IIII-of-NNNN.json</c>.
/// </summary>
public sealed class ProfileShard
{
    /// <summary>The kind recorded in the partial file's header.</summary>
    public const string Kind = "profile";

    /// <summary>Which share of the P x S generations this holds.</summary>
    public required Shard Shard { get; init; }
    /// <summary>The run descriptor (<see cref="ProfileRunner.Descriptor"/>): shards merge only when these agree.</summary>
    public required IReadOnlyDictionary<string, string> Run { get; init; }
    /// <summary>The profile's header with this shard's generations only; <see cref="BlockProfile.Mean"/> and
    /// <see cref="BlockProfile.Std"/> are empty.</summary>
    public required BlockProfile Partial { get; init; }

    /// <summary>The partial file of <paramref name="shard"/> in <paramref name="folder"/>.</summary>
    public static string PathIn(string folder, Shard shard) => ShardFiles.PartialPath(folder, Kind, shard);

    /// <summary>Writes the partial result atomically to <see cref="PathIn"/> of <paramref name="folder"/> and returns
    /// its path.</summary>
    public string Save(string folder)
    {
        string path = PathIn(folder, Shard);
        AtomicFile.Write(path, stream =>
        {
            using var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
            writer.WriteStartObject();
            ShardFiles.WriteHeader(writer, Kind, Shard, Run);
            writer.WritePropertyName("profile");
            JsonSerializer.Serialize(writer, Partial, BlockCacheJson.Options);
            writer.WriteEndObject();
        });
        return path;
    }

    /// <summary>Reads a partial profile file; errors name the file.</summary>
    /// <exception cref="DiffusionCacheException">Missing, not a profile shard, or inconsistent with its header.
    /// </exception>
    public static ProfileShard Load(string path)
    {
        var header = ShardFiles.ReadHeader(path);
        if (header.Kind != Kind) throw new DiffusionCacheException($"{path}: a {header.Kind} shard, expected a {Kind} shard");
        using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
        BlockProfile partial;
        try
        {
            partial = doc.RootElement.GetProperty("profile").Deserialize<BlockProfile>(BlockCacheJson.Options)
                ?? throw new DiffusionCacheException($"{path}: 'profile' is null");
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException)
        {
            throw new DiffusionCacheException($"{path}: not a valid partial profile ({e.Message})", e);
        }
        var (start, end) = header.Shard.Range(partial.NumConditions * partial.NumSeeds);
        if (partial.Generations.Count != end - start || partial.Generations.Select((g, i) => g.G != start + i).Any(bad => bad))
            throw new DiffusionCacheException($"{path}: shard {header.Shard} must hold generations {start}..{end - 1}");
        return new ProfileShard { Shard = header.Shard, Run = header.Run, Partial = partial };
    }

    /// <summary>The profile of a complete set of shards of one run (any order): generations concatenated in g
    /// order, then <see cref="BlockProfile.Aggregate"/> as in a single-process run.</summary>
    /// <exception cref="DiffusionCacheException">No shards, shards of different runs (naming the mismatch), a
    /// duplicated or missing shard, or headers that disagree (timesteps, blocks, sample shape).</exception>
    public static BlockProfile Merge(IReadOnlyList<ProfileShard> shards)
    {
        ArgumentNullException.ThrowIfNull(shards);
        var headers = ShardFiles.RequireComplete([.. shards.Select(s => new ShardHeader(Kind, s.Shard, s.Run, $"shard {s.Shard}"))]);
        var ordered = headers.Select(h => shards.First(s => s.Shard == h.Shard)).ToList();
        var first = ordered[0].Partial;
        foreach (var s in ordered.Skip(1))
        {
            var p = s.Partial;
            string? diff = !p.Timesteps.SequenceEqual(first.Timesteps) ? "timesteps"
                : !p.Blocks.SequenceEqual(first.Blocks) ? "blocks"
                : p.NumConditions != first.NumConditions || p.NumSeeds != first.NumSeeds ? "conditions x seeds"
                : p.Batch != first.Batch || p.SampleHeight != first.SampleHeight || p.SampleWidth != first.SampleWidth || p.ContextLength != first.ContextLength ? "sample shape"
                : p.GuidanceScale.CompareTo(first.GuidanceScale) != 0 ? "guidance scale"
                : null;
            if (diff is not null)
                throw new DiffusionCacheException($"shards of different runs: shard {s.Shard} differs from shard {ordered[0].Shard} in its {diff}");
        }
        var generations = ordered.SelectMany(s => s.Partial.Generations).ToList();
        var (mean, std) = BlockProfile.Aggregate([.. generations.Select(g => g.L1Rel)]);
        var profile = first with { Generations = generations, Mean = mean, Std = std };
        profile.Validate();
        return profile;
    }

    /// <summary>A one-line summary for logs: <c>profile shard 1/4: generations 2..3</c>.</summary>
    public override string ToString()
    {
        var (start, end) = Shard.Range(Partial.NumConditions * Partial.NumSeeds);
        return string.Create(CultureInfo.InvariantCulture, $"{Kind} shard {Shard}: generations {start}..{end - 1}");
    }
}
