using System.CommandLine;
using System.Globalization;
using DiffusionCache.Analysis;
using DiffusionCache.Caching.BlockCaching;
using DiffusionCache.Cli.Reporting;
using DiffusionCache.Models.Loading;
using Spectre.Console;

namespace DiffusionCache.Cli.Commands;

/// <summary>
/// <c>diffcache schedule</c>: the automatic cache schedule (Block Caching eq. 7, Fig. 4) of a profile at threshold
/// δ; writes the schedule JSON and a lifetime plot beside it (same name, <c>.png</c>), and prints the skipped
/// fraction and the MAC-theoretical speedup (MACs of a generation without caching / with the skipped block
/// evaluations removed, on the profile's model and input shape).
/// </summary>
internal static class ScheduleCommand
{
    public static Command Create()
    {
        var profile = new Option<string>("--profile") { Description = "profile.json written by 'diffcache profile'", Required = true };
        var delta = new Option<string>("--delta") { Description = "threshold δ > 0 on the accumulated mean change, or a multiple of the profile's median step change (8m)", Required = true };
        var output = new Option<string>("--out") { Description = "schedule JSON to write (the plot goes beside it as .png)", Required = true };
        var model = new Option<string?>("--model") { Description = "model folder for the MAC count (default: the profile's model_path)" };
        var command = new Command("schedule", "derive a block cache schedule from a profile (Block Caching eq. 7)") { profile, delta, output, model };
        command.SetAction(parse => CommandRunner.Run(() =>
            Execute(parse.GetValue(profile)!, parse.GetValue(delta)!, parse.GetValue(output)!, parse.GetValue(model))));
        return command;
    }

    private static int Execute(string profilePath, string deltaText, string output, string? modelOption)
    {
        var threshold = Threshold.Parse(deltaText, "--delta");
        var profile = BlockProfile.Load(profilePath);
        double delta = threshold.Resolve(profile);
        ScheduleBuilder.CheckDelta(delta);
        var schedule = ScheduleBuilder.FromProfile(profile, delta);

        string modelDir = modelOption ?? ModelOf(profilePath, profile)
            ?? throw new DiffusionCacheException($"{profilePath} names no model_path: pass --model for the MAC count");
        if (File.Exists(Path.Combine(modelDir, "model_index.json"))) modelDir = Path.Combine(modelDir, "unet");
        if (!Directory.Exists(modelDir)) throw new DiffusionCacheException($"{modelDir}: model folder not found (pass --model)");
        using var unet = UNetLoader.Create(modelDir);   // MACs need the architecture, not the weights
        schedule.Validate(unet, profile.Solver, profile.NumInferenceSteps);
        var macs = MacCounter.Count(unet, Math.Max(1, profile.Batch), profile.SampleHeight, profile.SampleWidth, Math.Max(1, profile.ContextLength));
        double speedup = schedule.MacSpeedup(macs);

        string png = Path.ChangeExtension(output, ".png");
        schedule.Save(output);
        SchedulePlot.Write(schedule, png);

        var table = new Table().Border(TableBorder.Simple).AddColumn("block").AddColumn(new TableColumn("computes").RightAligned())
            .AddColumn("compute steps").AddColumn(new TableColumn("MACs/call").RightAligned());
        for (int i = 0; i < schedule.Blocks.Count; i++)
        {
            table.AddRow(schedule.Blocks[i], $"{schedule.ComputeSteps[i].Count}/{schedule.Steps}",
                string.Join(" ", schedule.ComputeSteps[i]), InfoCommand.Format(macs.Of(schedule.Blocks[i])));
        }
        AnsiConsole.Write(table);
        string multiple = threshold.OfMedian ? $" ({deltaText.Trim()}: {threshold.Value.ToString("R", CultureInfo.InvariantCulture)} x the median change {profile.MedianChange.ToString("G4", CultureInfo.InvariantCulture)})" : "";
        Console.WriteLine($"schedule: δ={delta.ToString("R", CultureInfo.InvariantCulture)}{multiple}, {schedule.NumComputed} of " +
            $"{schedule.NumBlockEvaluations} block evaluations computed, skipped fraction " +
            $"{schedule.SkippedFraction.ToString("0.0000", CultureInfo.InvariantCulture)}");
        Console.WriteLine($"MAC-theoretical speedup: {speedup.ToString("0.000", CultureInfo.InvariantCulture)}x " +
            $"(U-Net call {InfoCommand.Format(macs.Total)} MACs at batch {Math.Max(1, profile.Batch)}, " +
            $"{profile.SampleHeight}x{profile.SampleWidth})");
        Console.WriteLine($"wrote {output}, {png}");
        return 0;
    }

    /// <summary>The profile's model: its model_path where that exists, else the model folder whose cache/ holds the
    /// profile (shipped profiles name the path they were made at, not the user's checkout).</summary>
    private static string? ModelOf(string profilePath, BlockProfile profile)
    {
        if (profile.ModelPath is string recorded && Directory.Exists(recorded)) return recorded;
        string? cache = Path.GetDirectoryName(Path.GetFullPath(profilePath));
        string? model = cache is not null && Path.GetFileName(cache) == "cache" ? Path.GetDirectoryName(cache) : null;
        return model is not null && File.Exists(Path.Combine(model, "model_index.json")) ? model : profile.ModelPath;
    }
}
