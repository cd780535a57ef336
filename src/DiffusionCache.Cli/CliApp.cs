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
        root.Subcommands.Add(BenchDtypeCommand.Create());
        root.Subcommands.Add(FrontierCommand.Create());
        root.Subcommands.Add(ReportCommand.Create());
        root.Subcommands.Add(ConvertCommand.Create());
        root.Subcommands.Add(MergeCommand.Create());
        root.Subcommands.Add(SlurmCommand.Create());
        // --version names the commit and the libtorch it runs on, not just the assembly version.
        foreach (var version in root.Options.OfType<VersionOption>()) version.Action = new PrintVersion();
        return root;
    }

    private sealed class PrintVersion : System.CommandLine.Invocation.SynchronousCommandLineAction
    {
        public override int Invoke(ParseResult parseResult)
        {
            parseResult.InvocationConfiguration.Output.WriteLine(Runtime.BuildInfo.Describe());
            return 0;
        }
    }

    public static int Run(params string[] args)
    {
        // Tables written to a file or pipe would otherwise wrap at Spectre's 80-column fallback.
        if (Console.IsOutputRedirected) Spectre.Console.AnsiConsole.Profile.Width = 200;
        return Create().Parse(args).Invoke();
    }
}
