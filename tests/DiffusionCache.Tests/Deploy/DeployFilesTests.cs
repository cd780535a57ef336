using System.Diagnostics;
using DiffusionCache.Cli;
using DiffusionCache.Data;
using DiffusionCache.Sharding;
using DiffusionCache.Tests.TestSupport;
using YamlDotNet.RepresentationModel;

namespace DiffusionCache.Tests.Deploy;

/// <summary>What of <c>deploy/</c> can be checked with no cluster: the Kubernetes manifests parse and are Indexed
/// Jobs whose <c>JOB_COMPLETION_INDEX</c> becomes <c>--shard I/N</c> with N = completions (the command is run through
/// /bin/sh with a stub <c>diffcache</c> and its arguments parsed by the real command tree), the shared volume is
/// the one the merge Job reads, the container definition builds with the README's commands; the static Slurm
/// scripts map <c>SLURM_ARRAY_TASK_ID</c> the same way.</summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class DeployFilesTests
{
    private static string K8s(string file) => Repository.Path("deploy", "k8s", file);

    private static YamlMappingNode Load(string path)
    {
        var stream = new YamlStream();
        using var reader = new StreamReader(path);
        stream.Load(reader);
        return (YamlMappingNode)Assert.Single(stream.Documents).RootNode;
    }

    private static YamlNode At(YamlNode node, params string[] path)
    {
        foreach (var key in path)
            node = key.All(char.IsAsciiDigit) ? ((YamlSequenceNode)node).Children[int.Parse(key, System.Globalization.CultureInfo.InvariantCulture)] : ((YamlMappingNode)node).Children[new YamlScalarNode(key)];
        return node;
    }

    private static string Scalar(YamlNode node, params string[] path) => ((YamlScalarNode)At(node, path)).Value!;

    /// <summary>Runs a shell command with a stub <c>diffcache</c> first on PATH; returns the arguments it got.</summary>
    private static string[] RunWithStub(string shell, string command, Dictionary<string, string> env, TempFolder dir)
    {
        string stub = dir.File("diffcache");
        File.WriteAllText(stub, "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done\n");
        File.SetUnixFileMode(stub, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var info = new ProcessStartInfo(shell) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = dir.Path };
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add(command);
        info.Environment["PATH"] = $"{dir.Path}:/usr/bin:/bin";
        foreach (var (k, v) in env) info.Environment[k] = v;
        using var p = Process.Start(info)!;
        string output = p.StandardOutput.ReadToEnd();
        string error = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, error);
        return output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
    }

    private static string After(string[] args, string option) => args[Array.IndexOf(args, option) + 1];

    [Theory]
    [InlineData("profile-job.yaml", "profile")]
    [InlineData("eval-job.yaml", "eval")]
    public void Indexed_jobs_map_the_completion_index_to_the_shard(string file, string workload)
    {
        var job = Load(K8s(file));
        Assert.Equal("batch/v1", Scalar(job, "apiVersion"));
        Assert.Equal("Job", Scalar(job, "kind"));
        Assert.Equal("Indexed", Scalar(job, "spec", "completionMode"));
        int n = int.Parse(Scalar(job, "spec", "completions"), System.Globalization.CultureInfo.InvariantCulture);
        var container = At(job, "spec", "template", "spec", "containers", "0");
        var command = ((YamlSequenceNode)At(container, "command")).Children.Select(c => ((YamlScalarNode)c).Value!).ToArray();
        Assert.Equal(["/bin/sh", "-c"], command[..2]);

        // The volume the shards go to is the shared claim.
        string mount = Scalar(container, "volumeMounts", "0", "mountPath");
        string volume = Scalar(container, "volumeMounts", "0", "name");
        Assert.Equal(volume, Scalar(job, "spec", "template", "spec", "volumes", "0", "name"));
        Assert.Equal(Scalar(Load(K8s("shards-pvc.yaml")), "metadata", "name"),
            Scalar(job, "spec", "template", "spec", "volumes", "0", "persistentVolumeClaim", "claimName"));
        Assert.Equal("ReadWriteMany", Scalar(Load(K8s("shards-pvc.yaml")), "spec", "accessModes", "0"));

        using var dir = new TempFolder();
        var outs = new HashSet<string>();
        for (int i = 0; i < n; i++)
        {
            var args = RunWithStub("/bin/sh", command[2], new() { ["JOB_COMPLETION_INDEX"] = i.ToString(System.Globalization.CultureInfo.InvariantCulture) }, dir);
            Assert.Equal(workload, args[0]);
            Assert.Equal(new Shard(i, n), Shard.Parse(After(args, "--shard")));
            Assert.StartsWith(mount + "/", After(args, "--out"), StringComparison.Ordinal);
            outs.Add(After(args, "--out"));
            var parse = CliApp.Create().Parse(args);
            Assert.True(parse.Errors.Count == 0, string.Join("; ", parse.Errors.Select(e => e.Message)));
        }
        Assert.Single(outs);   // every pod writes into one shard folder
        if (workload == "profile")
        {
            var merge = Load(K8s("merge-job.yaml"));
            var mergeCommand = ((YamlSequenceNode)At(merge, "spec", "template", "spec", "containers", "0", "command")).Children.Select(c => ((YamlScalarNode)c).Value!).ToArray();
            var mergeArgs = RunWithStub("/bin/sh", mergeCommand[2], [], dir);
            Assert.Equal(["merge", outs.Single(), "--out", Path.GetDirectoryName(outs.Single())!], mergeArgs);
            Assert.Equal(Scalar(job, "spec", "template", "spec", "volumes", "0", "persistentVolumeClaim", "claimName"),
                Scalar(merge, "spec", "template", "spec", "volumes", "0", "persistentVolumeClaim", "claimName"));
        }
    }

    [Fact]
    public void The_container_builds_with_the_readme_commands()
    {
        var lines = File.ReadAllLines(K8s("Dockerfile"));
        string readme = File.ReadAllText(Repository.Path("README.md"));
        var runs = lines.Where(l => l.StartsWith("RUN ", StringComparison.Ordinal)).Select(l => l[4..].Trim()).ToList();
        Assert.Contains("./diffcache --version", runs);
        foreach (var run in runs) Assert.Contains(run, readme, StringComparison.Ordinal);
        Assert.Contains(lines, l => l.StartsWith("FROM mcr.microsoft.com/dotnet/sdk:10.0", StringComparison.Ordinal));
        Assert.Contains(runs, r => r.Contains($"apt-get install -y --no-install-recommends {FashionMnist.PackageName}", StringComparison.Ordinal));
        Assert.Contains("docker build -f deploy/k8s/Dockerfile", readme, StringComparison.Ordinal);
    }

    [Fact]
    public void Slurm_array_scripts_map_the_task_id_to_the_shard()
    {
        using var dir = new TempFolder();
        foreach (var workload in new[] { "profile", "eval" })
        {
            string script = Repository.Path("deploy", "slurm", $"{workload}.sbatch");
            for (int i = 0; i < 3; i++)
            {
                var args = RunWithStub("/bin/bash", $"\"{script}\" out/run --steps 5", new()
                {
                    ["SLURM_ARRAY_TASK_ID"] = $"{i}", ["SLURM_ARRAY_TASK_COUNT"] = "3", ["DIFFCACHE"] = "diffcache",
                }, dir);
                Assert.Equal([workload, "--steps", "5", "--out", "out/run/shards", "--shard", $"{i}/3"], args);
            }
        }
        var merge = RunWithStub("/bin/bash", $"\"{Repository.Path("deploy", "slurm", "merge.sbatch")}\" out/run", new() { ["DIFFCACHE"] = "diffcache" }, dir);
        Assert.Equal(["merge", "out/run/shards", "--out", "out/run"], merge);
    }
}
