using System.Diagnostics;
using System.Text.Json;
using DiffusionCache.Tests.TestSupport;

namespace DiffusionCache.Tests.Sharding;

/// <summary>
/// <c>diffcache slurm profile|eval ... --shards 4</c> through a real one-node Slurm cluster
/// (<see cref="OneNodeSlurmCluster"/>): the array job's four tasks and the chained merge job run, and the merged
/// results equal single-process runs of the same commands with the tasks' thread count (OMP_NUM_THREADS=1; libtorch's
/// float results depend on the thread count in the last bits): the profile byte for byte, every eval figure (both
/// feature spaces, KID, intervals, the verdict against the first configuration) to 1e-9.
/// The CLI runs as a separate process (the built <c>diffcache.dll</c>), as it does on a cluster.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class SlurmShardTests
{
    private static string Cli => Repository.Path("src", "DiffusionCache.Cli", "bin", "Release", "net10.0", "diffcache.dll");
    private static string Model => Repository.Path("models", "fashion-ldm");

    private static readonly string[] ProfileArgs = ["--model", Model, "--steps", "3", "--conditions", "2", "--seeds", "2"];
    private static readonly string[] EvalArgs = ["--samples", "8", "--batch", "2", "--configs", "ddim:2:none,ddim:2:deepcache:2", "--reference-images", "100"];

    private static string Diffcache(Dictionary<string, string> env, params string[] args)
    {
        int rc = OneNodeSlurmCluster.RunStatus("dotnet", env, out var output, [Cli, .. args]);
        Assert.True(rc == 0, $"diffcache {string.Join(' ', args)} failed ({rc}):\n{(output.Length > 4000 ? output[^4000..] : output)}");
        return output;
    }

    private static string JobId(string output, string what)
    {
        var line = output.Split('\n').First(l => l.StartsWith($"submitted {what} job ", StringComparison.Ordinal));
        return line.Split(' ')[3];
    }

    [Fact]
    public void Four_shard_profile_and_eval_through_slurm_equal_single_process_runs()
    {
        Assert.True(File.Exists(Cli), $"{Cli} not built (dotnet build DiffusionCache.sln -c Release)");
        var clock = Stopwatch.StartNew();
        using var dir = new TempFolder();
        using var cluster = new OneNodeSlurmCluster();
        var env = cluster.Env;
        env["OMP_NUM_THREADS"] = "1";
        string launcher = $"dotnet {Cli}";

        string profile = Diffcache(env, ["slurm", "profile", .. ProfileArgs, "--out", dir.File("profile"), "--shards", "4", "--launcher", launcher]);
        string profileArray = JobId(profile, "array"), profileMerge = JobId(profile, "merge");
        cluster.Track(profileArray);
        cluster.Track(profileMerge);
        string eval = Diffcache(env, ["slurm", "eval", .. EvalArgs, "--out", dir.File("eval"), "--shards", "4", "--launcher", launcher]);
        string evalArray = JobId(eval, "array"), evalMerge = JobId(eval, "merge");
        cluster.Track(evalArray);
        cluster.Track(evalMerge);

        // The single-process references run while the cluster works (same thread count as the tasks).
        Diffcache(env, ["profile", .. ProfileArgs, "--out", dir.File("single-profile")]);
        string singleOutput = Diffcache(env, ["eval", .. EvalArgs, "--json", dir.File("single-eval.json")]);

        cluster.WaitCompleted(profileMerge, TimeSpan.FromMinutes(3), dir.File("profile/slurm/logs"));
        cluster.WaitCompleted(evalMerge, TimeSpan.FromMinutes(3), dir.File("eval/slurm/logs"));
        Assert.Equal("COMPLETED,COMPLETED,COMPLETED,COMPLETED", cluster.State(profileArray));

        Assert.Equal(File.ReadAllText(dir.File("single-profile/profile.json")), File.ReadAllText(dir.File("profile/profile.json")));
        Assert.Equal(File.ReadAllText(dir.File("single-profile/profile.csv")), File.ReadAllText(dir.File("profile/profile.csv")));
        Assert.True(File.Exists(dir.File("profile/profile.png")));
        Assert.Equal(4, Directory.EnumerateFiles(dir.File("profile/shards"), "profile.shard-*.json").Count());

        using var single = JsonDocument.Parse(File.ReadAllText(dir.File("single-eval.json")));
        using var merged = JsonDocument.Parse(File.ReadAllText(dir.File("eval/eval.json")));
        var s = single.RootElement.EnumerateArray().ToList();
        var m = merged.RootElement.EnumerateArray().ToList();
        Assert.Equal(s.Count, m.Count);
        for (int i = 0; i < s.Count; i++)
            foreach (var key in new[] { "fid", "class_accuracy", "fid_floor", "fid_floor_autoencoder", "classifier_test_accuracy" })
                Assert.True(Math.Abs(s[i].GetProperty(key).GetDouble() - m[i].GetProperty(key).GetDouble()) <= 1e-9, $"{key}: {s[i].GetProperty(key)} vs {m[i].GetProperty(key)}");
        EvalFigures.AssertSame(single.RootElement, merged.RootElement);   // both feature spaces, KID, intervals, the verdict
        Assert.Equal(2, m[1].GetProperty("spaces").GetArrayLength());
        Assert.Contains(m[1].GetProperty("versus_first").GetProperty("summary").GetString()!, singleOutput, StringComparison.Ordinal);
        Console.WriteLine($"slurm test: {clock.Elapsed.TotalSeconds:0} s");
    }

    [Fact]
    public void Without_sbatch_the_slurm_command_says_how_to_install_it_and_submits_nothing()
    {
        Assert.True(File.Exists(Cli), $"{Cli} not built");
        using var dir = new TempFolder();
        string dotnet = Environment.ProcessPath is string p && Path.GetFileNameWithoutExtension(p) == "dotnet" ? p : "/usr/share/dotnet/dotnet";
        var env = new Dictionary<string, string> { ["PATH"] = dir.Path };   // no sbatch anywhere on PATH
        int rc = OneNodeSlurmCluster.RunStatus(dotnet, env, out var output, [Cli, "slurm", "profile", .. ProfileArgs, "--out", dir.File("p"), "--shards", "2"]);
        Assert.Equal(1, rc);
        Assert.Contains("apt-get install slurm-client", output, StringComparison.Ordinal);
        Assert.False(Directory.Exists(dir.File("p")));
        rc = OneNodeSlurmCluster.RunStatus(dotnet, env, out output, [Cli, "slurm", "profile", .. ProfileArgs, "--out", dir.File("p"), "--shards", "2", "--dry-run"]);
        Assert.Equal(0, rc);
        Assert.Contains("#SBATCH --array=0-1", output, StringComparison.Ordinal);
        Assert.Contains("--shard \"${SLURM_ARRAY_TASK_ID}/2\"", output, StringComparison.Ordinal);
        Assert.Contains("--dependency=afterok:", output, StringComparison.Ordinal);
    }
}
