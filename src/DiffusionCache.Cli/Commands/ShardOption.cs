using System.CommandLine;
using DiffusionCache.Sharding;

namespace DiffusionCache.Cli.Commands;

/// <summary>The <c>--shard I/N</c> option shared by the commands whose work splits into shards (profile, eval):
/// shard I (0-based) of N does its deterministic share and writes a partial result for <c>diffcache merge</c>.
/// A shard whose partial result already exists in the output folder is skipped, so a preempted array job can be
/// resubmitted as is.</summary>
internal static class ShardOption
{
    public static Option<string?> Create() => new("--shard")
    {
        Description = "I/N: do only shard I (0-based) of N and write a partial result for 'diffcache merge' (skipped if already done)",
    };

    /// <summary>The parsed shard, or null without the option; a malformed or out-of-range value is an error.</summary>
    public static Shard? Parse(string? text) => text is null ? null : Shard.Parse(text);

    public static void SkipMessage(string path) => Console.WriteLine($"shard already done, skipped: {path}");
}
