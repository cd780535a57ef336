using System.CommandLine;
using DiffusionCache.Cli.Commands;

namespace DiffusionCache.Cli;

/// <summary>The command tree of <c>diffcache</c> (Program.cs runs it; tests call it with arguments).</summary>
internal static class CliApp
{
    public static RootCommand Create()
    {
        var root = new RootCommand("diffcache: faster diffusion sampling by caching what barely changes between steps");
        root.Subcommands.Add(ParityCommand.Create());
        root.Subcommands.Add(InfoCommand.Create());
        root.Subcommands.Add(BenchCommand.Create());
        root.Subcommands.Add(TrainCommand.Create());
        root.Subcommands.Add(GenerateCommand.Create());
        root.Subcommands.Add(EvalCommand.Create());
        root.Subcommands.Add(ProfileCommand.Create());
        root.Subcommands.Add(ScheduleCommand.Create());
        root.Subcommands.Add(BenchCacheCommand.Create());
        root.Subcommands.Add(BenchPipelineCommand.Create());
        root.Subcommands.Add(ConvertCommand.Create());
        return root;
    }

    public static int Run(params string[] args)
    {
        // Tables written to a file or pipe would otherwise wrap at Spectre's 80-column fallback.
        if (Console.IsOutputRedirected) Spectre.Console.AnsiConsole.Profile.Width = 200;
        return Create().Parse(args).Invoke();
    }
}
