using System.CommandLine;
using DiffusionCache.Sharding;

namespace DiffusionCache.Cli.Commands;

/// <summary><c>diffcache slurm profile|eval ARGS... --out DIR --shards N</c>: writes a Slurm array job (one
/// <c>--shard I/N</c> task per index, into <c>DIR/shards</c>) and a merge job chained with
/// <c>--dependency=afterok</c> (into <c>DIR</c>) under <c>DIR/slurm/</c>, and submits them with <c>sbatch</c>;
/// <c>--dry-run</c> prints the scripts instead. The workload's arguments are checked by parsing them as its command
/// would before anything is written or submitted.</summary>
internal static class SlurmCommand
{
    public static Command Create()
    {
        var command = new Command("slurm", "run a profile or eval as a Slurm array job (one shard per task) plus a merge job");
        command.Subcommands.Add(Workload("profile"));
        command.Subcommands.Add(Workload("eval"));
        return command;
    }

    private static Command Workload(string name)
    {
        var shards = new Option<int>("--shards") { Description = "N, the number of shards (array tasks)", Required = true };
        var output = new Option<string>("--out") { Description = "folder of the merged result; shards go to its shards/, scripts and logs to its slurm/", Required = true };
        var dryRun = new Option<bool>("--dry-run") { Description = "print the scripts instead of writing and submitting them" };
        var cpus = new Option<int>("--cpus-per-task") { Description = "CPUs per array task (its OpenMP threads)", DefaultValueFactory = _ => 1 };
        var partition = new Option<string?>("--partition") { Description = "Slurm partition (default: the cluster's)" };
        var time = new Option<string?>("--time") { Description = "time limit per task, e.g. 01:00:00" };
        var launcher = new Option<string?>("--launcher") { Description = "how tasks start the CLI (default: this CLI, e.g. 'dotnet /path/diffcache.dll')" };
        var command = new Command(name, $"{name} as a Slurm array job; all other arguments are {name}'s own") { shards, output, dryRun, cpus, partition, time, launcher };
        command.TreatUnmatchedTokensAsErrors = false;
        command.SetAction((parse, cancel) => Task.FromResult(CommandRunner.Run(() => Execute(name, [.. parse.UnmatchedTokens],
            parse.GetValue(shards), parse.GetValue(output)!, parse.GetValue(dryRun), parse.GetValue(cpus), parse.GetValue(partition),
            parse.GetValue(time), parse.GetValue(launcher)))));
        return command;
    }

    private static int Execute(string name, string[] args, int shards, string output, bool dryRun, int cpus, string? partition,
        string? time, string? launcher)
    {
        if (shards < 1) throw new DiffusionCacheException("--shards must be at least 1");
        if (cpus < 1) throw new DiffusionCacheException("--cpus-per-task must be at least 1");
        if (args.Any(a => a == "--shard" || a.StartsWith("--shard=", StringComparison.Ordinal)))
            throw new DiffusionCacheException("--shard is set per array task; give --shards N");
        if (args.Any(a => a == "--json" || a.StartsWith("--json=", StringComparison.Ordinal)))
            throw new DiffusionCacheException("--json does not apply: the merge job writes --out DIR/eval.json");
        CheckArguments(name, args, shards);
        var workload = new SlurmWorkload
        {
            Command = name, Arguments = args, Shards = shards, Output = Path.GetFullPath(output),
            Launcher = launcher ?? DefaultLauncher(), WorkingDirectory = Directory.GetCurrentDirectory(),
            CpusPerTask = cpus, Partition = partition, TimeLimit = time,
        };
        if (dryRun)
        {
            Console.WriteLine($"# ==> {workload.ArrayScriptPath} <==  (sbatch --parsable {workload.ArrayScriptPath})");
            Console.Write(SlurmJobs.ArrayScript(workload));
            Console.WriteLine($"# ==> {workload.MergeScriptPath} <==  (sbatch --dependency=afterok:ARRAY_JOB_ID {workload.MergeScriptPath})");
            Console.Write(SlurmJobs.MergeScript(workload));
            return 0;
        }
        var (array, merge) = SlurmJobs.Submit(workload);
        Console.WriteLine($"submitted array job {array} ({shards} tasks: {name} --shard 0..{shards - 1}/{shards} into {workload.ShardFolder})");
        Console.WriteLine($"submitted merge job {merge} (after every task succeeded: merge into {workload.Output})");
        Console.WriteLine($"watch: squeue -j {array},{merge}; diffcache merge --status {workload.ShardFolder}");
        Console.WriteLine($"scripts and logs: {workload.ScriptFolder}");
        return 0;
    }

    /// <summary>Parses the workload's arguments as its command would (with --out and --shard added), so that a
    /// typo fails here rather than in N array tasks, and refuses more shards than work items where the arguments
    /// tell the count.</summary>
    private static void CheckArguments(string name, string[] args, int shards)
    {
        var parse = CliApp.Create().Parse([name, .. args, "--out", "/nonexistent", "--shard", $"0/{shards}"]);
        if (parse.Errors.Count > 0)
            throw new DiffusionCacheException($"{name} arguments: {string.Join("; ", parse.Errors.Select(e => e.Message))}");
        if (name == "profile")
        {
            long generations = (long)parse.GetValue<int>("--conditions") * parse.GetValue<int>("--seeds");
            if (shards > generations) throw new DiffusionCacheException($"{shards} shards for {generations} generations (conditions x seeds): use at most {generations}");
        }
    }

    private static string DefaultLauncher()
    {
        string? process = Environment.ProcessPath;
        if (process is not null && Path.GetFileNameWithoutExtension(process) == "diffcache") return SlurmJobs.Quote(process);
        string dotnet = process is not null && Path.GetFileNameWithoutExtension(process) == "dotnet" ? process : SlurmJobs.FindOnPath("dotnet") ?? "dotnet";
        return $"{SlurmJobs.Quote(dotnet)} {SlurmJobs.Quote(typeof(SlurmCommand).Assembly.Location)}";
    }
}
