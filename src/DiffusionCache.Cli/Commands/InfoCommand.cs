using System.CommandLine;
using DiffusionCache.Analysis;
using DiffusionCache.Models.Loading;
using DiffusionCache.Models.Seam;
using Spectre.Console;

namespace DiffusionCache.Cli.Commands;

/// <summary><c>diffcache info MODEL_DIR</c>: parameters, the block tree with diffusers path names, and MACs per
/// block at a resolution (what caching a block can save at most).</summary>
internal static class InfoCommand
{
    public static Command Create()
    {
        var dir = new Argument<string>("model-dir") { Description = "diffusers U-Net folder (config.json + weights)" };
        var resolution = new Option<int?>("--resolution") { Description = "spatial side of the model input (default: the config's sample_size)" };
        var batch = new Option<int>("--batch") { Description = "batch size for the MAC count", DefaultValueFactory = _ => 1 };
        var contextLength = new Option<int>("--context-length") { Description = "cross-attention context tokens", DefaultValueFactory = _ => 77 };
        var command = new Command("info", "describe a U-Net: parameters, blocks and MACs per block") { dir, resolution, batch, contextLength };
        command.SetAction(parse => CommandRunner.Run(() =>
            Execute(parse.GetValue(dir)!, parse.GetValue(resolution), parse.GetValue(batch), parse.GetValue(contextLength))));
        return command;
    }

    private static int Execute(string dir, int? resolution, int batch, int contextLength)
    {
        if (batch < 1) throw new DiffusionCacheException("--batch must be at least 1");
        using var model = UNetLoader.Load(dir);
        int side = resolution ?? model.SampleSize;
        if (side < 1) throw new DiffusionCacheException("--resolution must be positive");
        var parameters = model.named_parameters().ToList();
        long total = parameters.Sum(p => p.parameter.numel());
        var macs = MacCounter.Count(model, batch, side, side, contextLength);

        AnsiConsole.MarkupLine($"[bold]{model.ClassName}[/]  {Markup.Escape(dir)}");
        AnsiConsole.MarkupLine($"parameters: {total:N0}   input: {batch}x{model.InChannels}x{side}x{side}" +
            (model.ContextDim is int d ? $"   context: {contextLength}x{d}" : "") +
            $"   MACs: {Format(macs.Total)}");
        var table = new Table().Border(TableBorder.Simple)
            .AddColumn(new TableColumn("block").NoWrap()).AddColumn("kind").AddColumn(new TableColumn("params").RightAligned())
            .AddColumn(new TableColumn("MACs").RightAligned()).AddColumn(new TableColumn("% of total").RightAligned());
        foreach (var site in model.Seam.Sites)
        {
            long p = parameters.Where(x => x.name.StartsWith(site.Path + ".", StringComparison.Ordinal)).Sum(x => x.parameter.numel());
            long m = macs.Of(site.Path);
            int depth = site.Path.Count(c => c == '.') / 2;
            table.AddRow(new string(' ', 2 * depth) + site.Path, site.Kind.ToString(), p.ToString("N0"), Format(m),
                (100.0 * m / Math.Max(1, macs.Total)).ToString("0.0"));
        }
        AnsiConsole.Write(table);
        return 0;
    }

    internal static string Format(long macs) => macs switch
    {
        >= 1_000_000_000 => $"{macs / 1e9:0.00} G",
        >= 1_000_000 => $"{macs / 1e6:0.00} M",
        >= 1_000 => $"{macs / 1e3:0.00} k",
        _ => macs.ToString(),
    };
}
