using System.Text.Json;
using DiffusionCache.Formats;

namespace DiffusionCache.Cli.Reporting;

/// <summary>The wall time every invocation of a resumable command has spent on one store, kept in its state folder,
/// so that a report made over several resumed runs states what it cost in all and not only its last run.</summary>
internal static class RunTimeLedger
{
    internal sealed record Entry(double Minutes, int Invocations);

    /// <summary>What <paramref name="path"/> holds; nothing spent where it does not exist yet.</summary>
    internal static Entry Read(string path)
    {
        if (!File.Exists(path)) return new Entry(0, 0);
        try
        {
            return JsonSerializer.Deserialize<Entry>(File.ReadAllText(path), StudyText.JsonOptions)
                ?? throw new DiffusionCacheException($"{path}: empty run-time ledger; delete it to start counting again");
        }
        catch (JsonException e)
        {
            throw new DiffusionCacheException($"{path}: not a run-time ledger ({e.Message}); delete it to start counting again");
        }
    }

    /// <summary>Adds one invocation's <paramref name="elapsed"/> and returns the totals, written atomically.</summary>
    internal static Entry Add(string path, TimeSpan elapsed)
    {
        if (elapsed < TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(elapsed), elapsed, "elapsed time cannot be negative");
        var before = Read(path);
        var after = new Entry(before.Minutes + elapsed.TotalMinutes, before.Invocations + 1);
        AtomicFile.WriteAllText(path, JsonSerializer.Serialize(after, StudyText.JsonOptions));
        return after;
    }
}
