using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace DiffusionCache.Sharding;

/// <summary>A sharded workload to run on Slurm: an array job of <see cref="Shards"/> tasks (task I runs
/// <c>--shard I/N</c>) and a merge job that starts when every task succeeded (<c>--dependency=afterok</c>).</summary>
public sealed record SlurmWorkload
{
    /// <summary>The workload, <c>profile</c> or <c>eval</c> (the subcommand the tasks run).</summary>
    public required string Command { get; init; }
    /// <summary>The workload's own arguments, without <c>--shard</c> and <c>--out</c>.</summary>
    public required IReadOnlyList<string> Arguments { get; init; }
    /// <summary>N, the number of shards (array tasks).</summary>
    public required int Shards { get; init; }
    /// <summary>The merged result's folder; the shards write into its <c>shards/</c> subfolder. Absolute.</summary>
    public required string Output { get; init; }
    /// <summary>How the tasks start the CLI (already shell-quoted words), e.g. <c>'/usr/bin/dotnet' '/x/diffcache.dll'</c>.
    /// </summary>
    public required string Launcher { get; init; }
    /// <summary>The folder the jobs run in (relative paths in <see cref="Arguments"/> are relative to it).</summary>
    public required string WorkingDirectory { get; init; }
    /// <summary>CPUs per array task; the tasks' OpenMP threads follow it.</summary>
    public int CpusPerTask { get; init; } = 1;
    /// <summary>Slurm partition (null: the cluster's default).</summary>
    public string? Partition { get; init; }
    /// <summary>Time limit per task (<c>--time</c>, e.g. <c>01:00:00</c>; null: the partition's).</summary>
    public string? TimeLimit { get; init; }

    /// <summary>Where the shards write their partial results.</summary>
    public string ShardFolder => Path.Combine(Output, "shards");
    /// <summary>Where the scripts and the jobs' logs go.</summary>
    public string ScriptFolder => Path.Combine(Output, "slurm");
    /// <summary>The array job script's path.</summary>
    public string ArrayScriptPath => Path.Combine(ScriptFolder, $"{Command}-array.sbatch");
    /// <summary>The merge job script's path.</summary>
    public string MergeScriptPath => Path.Combine(ScriptFolder, $"{Command}-merge.sbatch");
}

/// <summary>Writes and submits the Slurm scripts of a sharded workload.</summary>
public static class SlurmJobs
{
    /// <summary>Quotes a word for bash (single quotes).</summary>
    public static string Quote(string word)
    {
        ArgumentNullException.ThrowIfNull(word);
        return word.Length > 0 && word.All(c => char.IsAsciiLetterOrDigit(c) || "-_./=:,+@%".Contains(c))
            ? word : "'" + word.Replace("'", "'\\''", StringComparison.Ordinal) + "'";
    }

    /// <summary>The array job: <c>--array=0-(N-1)</c>, one shard per task, <c>SLURM_ARRAY_TASK_ID</c> as the shard
    /// index.</summary>
    public static string ArrayScript(SlurmWorkload w)
    {
        ArgumentNullException.ThrowIfNull(w);
        var s = Header(w, $"diffcache-{w.Command}", Path.Combine(w.ScriptFolder, "logs", $"{w.Command}-%A_%a.out"));
        s.Append(CultureInfo.InvariantCulture, $"#SBATCH --array=0-{w.Shards - 1}\n");
        s.Append(CultureInfo.InvariantCulture, $"#SBATCH --cpus-per-task={w.CpusPerTask}\n");
        if (w.TimeLimit is not null) s.Append(CultureInfo.InvariantCulture, $"#SBATCH --time={w.TimeLimit}\n");
        s.Append("set -euo pipefail\n");
        s.Append("# one shard per array task; a shard already done (a resubmitted, preempted array) is skipped\n");
        s.Append("export OMP_NUM_THREADS=\"${SLURM_CPUS_PER_TASK:-1}\"\n");
        s.Append(CultureInfo.InvariantCulture, $"exec {w.Launcher} {w.Command} {string.Join(' ', w.Arguments.Select(Quote))} \\\n");
        s.Append(CultureInfo.InvariantCulture, $"    --out {Quote(w.ShardFolder)} --shard \"${{SLURM_ARRAY_TASK_ID}}/{w.Shards}\"\n");
        return s.ToString();
    }

    /// <summary>The merge job (submitted with <c>--dependency=afterok:ARRAY_JOB</c>).</summary>
    public static string MergeScript(SlurmWorkload w)
    {
        ArgumentNullException.ThrowIfNull(w);
        var s = Header(w, $"diffcache-{w.Command}-merge", Path.Combine(w.ScriptFolder, "logs", $"{w.Command}-merge-%j.out"));
        s.Append("#SBATCH --cpus-per-task=1\n");
        s.Append("set -euo pipefail\n");
        s.Append(CultureInfo.InvariantCulture, $"exec {w.Launcher} merge {Quote(w.ShardFolder)} --out {Quote(w.Output)}\n");
        return s.ToString();
    }

    private static StringBuilder Header(SlurmWorkload w, string name, string log)
    {
        var s = new StringBuilder("#!/bin/bash\n");
        s.Append(CultureInfo.InvariantCulture, $"#SBATCH --job-name={name}\n");
        s.Append(CultureInfo.InvariantCulture, $"#SBATCH --chdir={w.WorkingDirectory}\n");
        s.Append(CultureInfo.InvariantCulture, $"#SBATCH --output={log}\n");
        if (w.Partition is not null) s.Append(CultureInfo.InvariantCulture, $"#SBATCH --partition={w.Partition}\n");
        return s;
    }

    /// <summary>The message when <c>sbatch</c> is missing.</summary>
    public const string InstallHint = "sbatch not found on PATH: run this on a Slurm login node, or install Slurm's client commands " +
        "(Debian/Ubuntu: apt-get install slurm-client; a whole one-node cluster: apt-get install slurm-wlm munge), " +
        "or pass --dry-run to print the scripts";

    /// <summary>The full path of an executable on PATH, or null.</summary>
    public static string? FindOnPath(string name)
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = Path.Combine(dir, name);
            if (File.Exists(candidate)) return candidate;
        }
        return null;
    }

    /// <summary>Writes both scripts (atomically) and submits them: the array job, then the merge job depending on it
    /// with <c>afterok</c>. Returns the two job ids.</summary>
    /// <exception cref="DiffusionCacheException"><c>sbatch</c> is missing (with how to install it) or refused a
    /// script (with its message).</exception>
    public static (string ArrayJob, string MergeJob) Submit(SlurmWorkload w)
    {
        ArgumentNullException.ThrowIfNull(w);
        string sbatch = FindOnPath("sbatch") ?? throw new DiffusionCacheException(InstallHint);
        Directory.CreateDirectory(Path.Combine(w.ScriptFolder, "logs"));
        Directory.CreateDirectory(w.ShardFolder);
        Formats.AtomicFile.WriteAllText(w.ArrayScriptPath, ArrayScript(w));
        Formats.AtomicFile.WriteAllText(w.MergeScriptPath, MergeScript(w));
        string array = Sbatch(sbatch, "--parsable", w.ArrayScriptPath);
        string merge = Sbatch(sbatch, "--parsable", $"--dependency=afterok:{array}", "--kill-on-invalid-dep=yes", w.MergeScriptPath);
        return (array, merge);
    }

    private static string Sbatch(string sbatch, params string[] args)
    {
        var info = new ProcessStartInfo(sbatch) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) info.ArgumentList.Add(a);
        using var process = Process.Start(info) ?? throw new DiffusionCacheException($"could not start {sbatch}");
        var stderr = process.StandardError.ReadToEndAsync();
        string stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
            throw new DiffusionCacheException($"sbatch {string.Join(' ', args)} failed (exit {process.ExitCode}): {stderr.Result.Trim()}");
        string id = stdout.Trim().Split(';')[0];
        if (id.Length == 0 || !id.All(char.IsAsciiDigit)) throw new DiffusionCacheException($"sbatch printed no job id: '{stdout.Trim()}'");
        return id;
    }
}
