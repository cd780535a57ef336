using System.CommandLine;
using DiffusionCache.Cli.Commands;

var root = new RootCommand("diffcache: faster diffusion sampling by caching what barely changes between steps");
root.Subcommands.Add(ParityCommand.Create());
root.Subcommands.Add(InfoCommand.Create());
root.Subcommands.Add(BenchCommand.Create());
root.Subcommands.Add(TrainCommand.Create());
root.Subcommands.Add(GenerateCommand.Create());
root.Subcommands.Add(EvalCommand.Create());
root.Subcommands.Add(ConvertCommand.Create());
return root.Parse(args).Invoke();
