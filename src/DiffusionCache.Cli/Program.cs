using DiffusionCache.Cli;

return CliApp.Run(args);
