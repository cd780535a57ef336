using System.Text.Json;
using DiffusionCache.Cli;
using DiffusionCache.Tests.Sharding;
using DiffusionCache.Tests.TestSupport;

namespace DiffusionCache.Tests.Cli.Commands;

/// <summary><c>--shard I/N</c> on profile and eval, and <c>diffcache merge</c>, on the embedded model with tiny
/// settings: four shards merged equal the single-process run (profile files byte for byte; every eval figure, both
/// feature spaces with KID, intervals and the verdict, to 1e-9),
/// a re-run shard is skipped, and bad input (malformed shard, missing or duplicated shard, shards of different runs)
/// is one error with nothing merged.</summary>
public sealed class ShardMergeCommandTests
{
    private static string Model => Repository.Path("models", "fashion-ldm");

    private static string[] Profile(string output, int steps = 3, params string[] extra) =>
        ["profile", "--model", Model, "--steps", steps.ToString(System.Globalization.CultureInfo.InvariantCulture), "--conditions", "2", "--seeds", "2", "--out", output, .. extra];

    private static readonly string[] EvalArgs =
        ["eval", "--samples", "6", "--batch", "2", "--configs", "ddim:2:none,ddim:2:deepcache:2", "--reference-images", "100"];

    [Fact]
    public void Four_profile_shards_merge_into_exactly_the_single_process_profile()
    {
        using var dir = new TempFolder();
        Assert.Equal(0, CliApp.Run(Profile(dir.File("single"))));
        for (int i = 0; i < 4; i++) Assert.Equal(0, CliApp.Run(Profile(dir.File("shards"), 3, "--shard", $"{i}/4")));
        var before = File.GetLastWriteTimeUtc(dir.File("shards/profile.shard-0002-of-0004.json"));
        Assert.Equal(0, CliApp.Run(Profile(dir.File("shards"), 3, "--shard", "2/4")));   // done: skipped
        Assert.Equal(before, File.GetLastWriteTimeUtc(dir.File("shards/profile.shard-0002-of-0004.json")));
        Assert.Equal(0, CliApp.Run("merge", "--status", dir.File("shards")));
        Assert.Equal(0, CliApp.Run("merge", dir.File("shards"), "--out", dir.File("merged")));
        Assert.Equal(File.ReadAllText(dir.File("single/profile.json")), File.ReadAllText(dir.File("merged/profile.json")));
        Assert.Equal(File.ReadAllText(dir.File("single/profile.csv")), File.ReadAllText(dir.File("merged/profile.csv")));
        Assert.True(File.Exists(dir.File("merged/profile.png")));
    }

    [Fact]
    public void Missing_duplicated_or_foreign_shards_are_refused_and_nothing_is_merged()
    {
        using var dir = new TempFolder();
        string a = dir.File("a"), b = dir.File("b"), c = dir.File("c");
        Assert.Equal(0, CliApp.Run(Profile(a, 2, "--shard", "0/2")));
        Assert.Equal(1, CliApp.Run("merge", "--status", a));                           // 1/2 missing
        Assert.Equal(1, CliApp.Run("merge", a, "--out", dir.File("out")));              // missing shard
        Assert.Equal(0, CliApp.Run(Profile(b, 2, "--shard", "1/2")));
        Assert.Equal(0, CliApp.Run(Profile(c, 2, "--shard", "0/2")));
        Assert.Equal(1, CliApp.Run("merge", a, b, c, "--out", dir.File("out")));        // 0/2 twice
        Assert.Equal(0, CliApp.Run(Profile(dir.File("d"), 3, "--shard", "1/2")));
        Assert.Equal(1, CliApp.Run("merge", a, dir.File("d"), "--out", dir.File("out"))); // other steps
        Assert.Equal(1, CliApp.Run(Profile(a, 3, "--shard", "0/2")));                  // a different run's shard is there
        Assert.False(Directory.Exists(dir.File("out")));
        Assert.Equal(0, CliApp.Run("merge", a, b, "--out", dir.File("out")));
        Assert.True(File.Exists(dir.File("out/profile.json")));
    }

    [Theory]
    [InlineData("profile", "4/4")]
    [InlineData("profile", "1/0")]
    [InlineData("profile", "x")]
    [InlineData("profile", "0/5")]   // 5 shards for 2 x 2 generations
    [InlineData("eval", "2/2")]
    [InlineData("eval", "-1/2")]
    [InlineData("eval", "0/7")]      // 7 shards for 2 x 3 batches
    public void Bad_shards_fail_with_no_output(string command, string shard)
    {
        using var dir = new TempFolder();
        string output = dir.File("out");
        string[] args = command == "profile" ? Profile(output, 2, "--shard", shard) : [.. EvalArgs, "--shard", shard, "--out", output];
        Assert.Equal(1, CliApp.Run(args));
        Assert.False(Directory.Exists(output) && Directory.EnumerateFileSystemEntries(output).Any());
    }

    [Fact]
    public void Four_eval_shards_merge_into_the_single_process_figures()
    {
        using var dir = new TempFolder();
        Succeeds([.. EvalArgs, "--json", dir.File("single.json")]);
        for (int i = 0; i < 4; i++) Succeeds([.. EvalArgs, "--shard", $"{i}/4", "--out", dir.File("shards")]);
        // The merge as its own process, so its console output (the shared table and the verdict) can be read.
        int rc = RunCli(out var printed, "merge", dir.File("shards"), "--out", dir.File("merged"));
        Assert.True(rc == 0, printed);

        using var single = JsonDocument.Parse(File.ReadAllText(dir.File("single.json")));
        using var merged = JsonDocument.Parse(File.ReadAllText(dir.File("merged/eval.json")));
        var s = single.RootElement.EnumerateArray().ToList();
        var m = merged.RootElement.EnumerateArray().ToList();
        Assert.Equal(2, s.Count);
        Assert.Equal(2, m.Count);
        EvalFigures.AssertSame(single.RootElement, merged.RootElement);   // every figure, both spaces, KID, intervals, verdict
        for (int i = 0; i < 2; i++)
        {
            foreach (var key in new[] { "fid", "class_accuracy", "fid_floor", "fid_floor_autoencoder", "classifier_test_accuracy" })
                Assert.True(Math.Abs(s[i].GetProperty(key).GetDouble() - m[i].GetProperty(key).GetDouble()) <= 1e-9, key);
            Assert.Equal(6, m[i].GetProperty("samples").GetInt32());
            Assert.Equal(["classifier", "resnet"], m[i].GetProperty("spaces").EnumerateArray().Select(x => x.GetProperty("space").GetString()));
            Assert.Equal(m[i].GetProperty("fid").GetDouble(), m[i].GetProperty("spaces")[0].GetProperty("fid").GetDouble());
        }
        Assert.Equal(JsonValueKind.Null, m[0].GetProperty("versus_first").ValueKind);
        string summary = m[1].GetProperty("versus_first").GetProperty("summary").GetString()!;
        Assert.Contains("ddim, 2 steps, guidance 4, no cache", summary, StringComparison.Ordinal);
        Assert.Contains(summary, printed, StringComparison.Ordinal);
        Assert.Contains("KID×10³ resnet [95 %]", printed, StringComparison.Ordinal);
        Assert.Contains("floor: test through the autoencoder vs test", printed, StringComparison.Ordinal);
    }

    [Fact]
    public void Eval_with_one_feature_space_merges_too()
    {
        using var dir = new TempFolder();
        string[] args = [.. EvalArgs, "--second-classifier", "none"];
        Succeeds([.. args, "--json", dir.File("single.json")]);
        for (int i = 0; i < 2; i++) Succeeds([.. args, "--shard", $"{i}/2", "--out", dir.File("shards")]);
        Assert.Equal(1, CliApp.Run([.. EvalArgs, "--shard", "1/2", "--out", dir.File("shards")]));   // a two-space shard of another run
        Assert.Equal(0, CliApp.Run("merge", dir.File("shards"), "--out", dir.File("merged")));
        using var single = JsonDocument.Parse(File.ReadAllText(dir.File("single.json")));
        using var merged = JsonDocument.Parse(File.ReadAllText(dir.File("merged/eval.json")));
        EvalFigures.AssertSame(single.RootElement, merged.RootElement);
        Assert.Equal(1, merged.RootElement[0].GetProperty("spaces").GetArrayLength());
    }

    /// <summary>Runs the CLI in-process and fails with what it wrote to stderr unless it exits 0.</summary>
    private static void Succeeds(params string[] args)
    {
        var (rc, error) = RuntimeOptionsTests.RunCapturingErrors(args);
        Assert.True(rc == 0, $"diffcache {string.Join(' ', args)} exited {rc}: {error}");
    }

    /// <summary>Runs the built CLI as a process; stdout and stderr together in <paramref name="output"/>.</summary>
    private static int RunCli(out string output, params string[] args)
    {
        string cli = Repository.Path("src", "DiffusionCache.Cli", "bin", "Release", "net10.0", "diffcache.dll");
        string dotnet = Environment.ProcessPath is string p && Path.GetFileNameWithoutExtension(p) == "dotnet" ? p : "dotnet";
        var info = new System.Diagnostics.ProcessStartInfo(dotnet) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in (string[])[cli, .. args]) info.ArgumentList.Add(a);
        using var process = System.Diagnostics.Process.Start(info) ?? throw new InvalidOperationException("could not start the CLI");
        var stderr = process.StandardError.ReadToEndAsync();
        output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        output += stderr.Result;
        return process.ExitCode;
    }
}
