using System.CommandLine;
using DiffusionCache.Caching.BlockCaching;
using DiffusionCache.Cli.Reporting;
using DiffusionCache.Evaluation;
using DiffusionCache.Formats;
using DiffusionCache.Sharding;

namespace DiffusionCache.Cli.Commands;

/// <summary><c>diffcache merge SHARD_DIR... --out DIR</c>: combines the partial results of a sharded
/// <c>profile</c> or <c>eval</c> (<c>--shard I/N</c>) into exactly what the single-process run writes
/// (<c>profile.json</c>, <c>profile.csv</c>, <c>profile.png</c>; or <c>eval.json</c>). <c>--status</c> lists done and
/// missing shards instead (exit 0 when complete, 1 when shards are missing). Nothing is written unless every shard
/// is there and all belong to one run.</summary>
internal static class MergeCommand
{
    public static Command Create()
    {
        var folders = new Argument<string[]>("SHARD_DIR") { Description = "folders holding the shards' partial results", Arity = ArgumentArity.OneOrMore };
        var output = new Option<string?>("--out") { Description = "folder for the merged result" };
        var status = new Option<bool>("--status") { Description = "list done and missing shards instead of merging" };
        var command = new Command("merge", "combine the partial results of a sharded profile or eval") { folders, output, status };
        command.SetAction((parse, cancel) => Task.FromResult(CommandRunner.Run(() =>
            parse.GetValue(status) ? Status(parse.GetValue(folders)!) : Merge(parse.GetValue(folders)!, parse.GetValue(output)))));
        return command;
    }

    private static int Status(string[] folders)
    {
        var status = ShardFiles.Status(ShardFiles.Find(folders));
        Console.WriteLine($"{status.Kind} run, {status.Count} shards: {status.Done.Count} done, {status.Missing.Count} missing");
        foreach (var h in status.Done) Console.WriteLine($"  done     {h.Shard,-9} {h.Path}");
        foreach (int i in status.Missing) Console.WriteLine($"  missing  {new Shard(i, status.Count)}");
        return status.Complete ? 0 : 1;
    }

    private static int Merge(string[] folders, string? output)
    {
        if (output is null) throw new DiffusionCacheException("merge needs --out FOLDER (or --status)");
        if (File.Exists(output)) throw new DiffusionCacheException($"{output}: is a file, expected a folder");
        var headers = ShardFiles.RequireComplete(ShardFiles.Find(folders));
        return headers[0].Kind switch
        {
            ProfileShard.Kind => MergeProfile(headers, output),
            EvalShard.Kind => MergeEval(headers, output),
            var kind => throw new DiffusionCacheException($"{headers[0].Path}: unknown kind of shard '{kind}'"),
        };
    }

    private static int MergeProfile(IReadOnlyList<ShardHeader> headers, string output)
    {
        var profile = ProfileShard.Merge([.. headers.Select(h => ProfileShard.Load(h.Path))]);
        var written = Publish(output, staging =>
        {
            profile.Save(Path.Combine(staging, "profile.json"));
            profile.SaveCsv(Path.Combine(staging, "profile.csv"));
            ProfilePlot.Write(profile, Path.Combine(staging, "profile.png"));
        });
        Console.WriteLine($"merged {headers.Count} profile shards: {profile.Model}, {profile.Solver} {profile.NumInferenceSteps} steps, " +
            $"{profile.NumConditions} conditions x {profile.NumSeeds} seeds, {profile.Blocks.Count} {profile.Targets} blocks");
        Console.WriteLine($"wrote {string.Join(", ", written)}");
        return 0;
    }

    private static int MergeEval(IReadOnlyList<ShardHeader> headers, string output)
    {
        var shards = new List<EvalShard>();
        try
        {
            foreach (var h in headers) shards.Add(EvalShard.Load(h.Path));
            var rows = ShardedEvaluation.Merge(shards);
            var settings = shards[0].Settings;
            var written = Publish(output, staging =>
                AtomicFile.WriteAllText(Path.Combine(staging, "eval.json"), ShardedEvaluation.ToJson(rows, settings.AsList)));
            Console.WriteLine($"merged {headers.Count} eval shards ({settings.Samples} samples per configuration; sampling s summed over shards)");
            EvalTable.Write(rows);
            Console.WriteLine($"wrote {string.Join(", ", written)}");
            return 0;
        }
        finally
        {
            foreach (var s in shards) s.Dispose();
        }
    }

    /// <summary>Writes the merged files into a hidden staging folder beside <paramref name="output"/> and moves them
    /// in only when all are written: on any failure, nothing of the merge is left.</summary>
    private static IReadOnlyList<string> Publish(string output, Action<string> write)
    {
        string full = Path.GetFullPath(output);
        string parent = Path.GetDirectoryName(full.TrimEnd(Path.DirectorySeparatorChar)) ?? ".";
        Directory.CreateDirectory(parent);
        string staging = Path.Combine(parent, $".{Path.GetFileName(full.TrimEnd(Path.DirectorySeparatorChar))}.merge-{Guid.NewGuid():N}");
        bool created = !Directory.Exists(full);
        try
        {
            Directory.CreateDirectory(staging);
            write(staging);
            Directory.CreateDirectory(full);
            var written = new List<string>();
            foreach (var file in Directory.EnumerateFiles(staging).Order(StringComparer.Ordinal))
            {
                string target = Path.Combine(full, Path.GetFileName(file));
                File.Move(file, target, overwrite: true);
                written.Add(target);
            }
            return written;
        }
        catch
        {
            if (created && Directory.Exists(full) && !Directory.EnumerateFileSystemEntries(full).Any()) Directory.Delete(full);
            throw;
        }
        finally
        {
            if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true);
        }
    }
}
