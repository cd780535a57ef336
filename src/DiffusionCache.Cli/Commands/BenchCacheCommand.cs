using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using DiffusionCache.Analysis;
using DiffusionCache.Caching;
using DiffusionCache.Caching.BlockCaching;
using DiffusionCache.Caching.DeepCache;
using DiffusionCache.Cli.Reporting;
using DiffusionCache.Evaluation;
using DiffusionCache.Formats;
using DiffusionCache.Models.Loading;
using DiffusionCache.Models.UNets;
using DiffusionCache.Pipelines;
using DiffusionCache.Schedulers;
using Spectre.Console;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Cli.Commands;

/// <summary>
/// <c>diffcache bench-cache</c>: no cache, fewer steps, DeepCache at several N and Block Caching at several δ,
/// measured side by side in one process: latency per image, speedup over no cache in the same run, the
/// MAC-theoretical speedup, cache memory, and fidelity (PSNR/SSIM) to the uncached result from the same seed.
/// </summary>
internal static class BenchCacheCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "pipeline folder, Stable Diffusion/SDXL single-file checkpoint (.safetensors), U-Net folder, sd15, sd21 or sdxl (random weights); default: the embedded model", DefaultValueFactory = _ => TrainCommand.DefaultModel };
        var config = new Option<string?>("--config") { Description = "single-file checkpoints: a diffusers folder of the model's family to take configs, scheduler and tokenizers from (default: the family's)" };
        var solver = new Option<string>("--solver") { Description = "ddim, ddpm, plms, dpm++ or euler", DefaultValueFactory = _ => "ddim" };
        var steps = new Option<int>("--steps") { Description = "reference step count", DefaultValueFactory = _ => 50 };
        var guidance = new Option<double>("--guidance") { Description = "classifier-free guidance scale", DefaultValueFactory = _ => 4.0 };
        var batch = new Option<int>("--batch") { Description = "images per generation", DefaultValueFactory = _ => 4 };
        var latent = new Option<int?>("--latent") { Description = "latent side for U-Net-only models (default: sample_size)" };
        var repeats = new Option<int>("--repeats") { Description = "timed rounds (after one warm-up round)", DefaultValueFactory = _ => 5 };
        var intervals = new Option<string>("--deepcache") { Description = "DeepCache intervals N (comma-separated)", DefaultValueFactory = _ => "2,3,5" };
        var branch = new Option<int>("--branch") { Description = "DeepCache branch id", DefaultValueFactory = _ => 0 };
        var deltas = new Option<string?>("--deltas") { Description = "Block Caching thresholds; a value ending in m is a multiple of the profile's median step change (default: 0.5m,1m,2m,4m,8m,16m,32m)" };
        var profile = new Option<string?>("--profile") { Description = "Block Caching profile (default: the model's shipped profile when it matches, else one is measured)" };
        var output = new Option<string>("--out") { Description = "folder for bench-cache.md/.json and the speed-vs-delta plot", DefaultValueFactory = _ => "out/bench-cache" };
        var json = new Option<string?>("--json") { Description = "also write the rows as JSON to this file" };
        var profileConditions = new Option<int>("--profile-conditions") { Description = "conditions of the Block Caching profile measured when none is given (x 1 seed)", DefaultValueFactory = _ => 4 };
        var prompts = new Option<string?>("--prompts") { Description = "Stable Diffusion folders: a prompt file (one per line) for the batch rows and the profile's conditions" };
        var command = new Command("bench-cache", "compare caching configurations side by side: speed, MACs, memory, fidelity")
            { model, config, solver, steps, guidance, batch, latent, repeats, intervals, branch, deltas, profile, output, json, prompts, profileConditions };
        var runtime = new RuntimeOptions();
        runtime.AddTo(command);
        command.SetAction((parse, cancel) => Task.FromResult(CommandRunner.Run(() =>
        {
            var load = runtime.Apply(parse);
            return Execute(new Settings(
                parse.GetValue(model)!, parse.GetValue(solver)!, parse.GetValue(steps), parse.GetValue(guidance), parse.GetValue(batch),
                parse.GetValue(latent), parse.GetValue(repeats), Numbers(parse.GetValue(intervals)!, "--deepcache").Select(x => (int)x).ToArray(),
                parse.GetValue(branch), parse.GetValue(deltas) is string d ? Threshold.ParseList(d, "--deltas") : null, parse.GetValue(profile),
                parse.GetValue(output)!, parse.GetValue(json), parse.GetValue(prompts), parse.GetValue(profileConditions), load) { ConfigDir = parse.GetValue(config) }, cancel);
        })));
        return command;
    }

    private sealed record Settings(string Model, string Solver, int Steps, double Guidance, int Batch, int? Latent, int Repeats,
        int[] Intervals, int Branch, Threshold[]? Deltas, string? Profile, string Out, string? Json, string? Prompts, int ProfileConditions,
        PipelineLoadOptions Load)
    {
        public string? ConfigDir { get; init; }
    }

    private static double[] Numbers(string list, string option)
    {
        try
        {
            return list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(s => double.Parse(s, CultureInfo.InvariantCulture)).ToArray();
        }
        catch (FormatException)
        {
            throw new DiffusionCacheException($"{option} must be a comma-separated list of numbers, got '{list}'");
        }
    }

    private static int Execute(Settings s, CancellationToken cancel)
    {
        if (s.Steps < 1 || s.Batch < 1 || s.Repeats < 1 || s.ProfileConditions < 1)
            throw new DiffusionCacheException("--steps, --batch, --repeats and --profile-conditions must be positive");
        if (s.Intervals.Any(n => n < 1)) throw new DiffusionCacheException("DeepCache intervals must be at least 1");
        using var target = BenchTargets.Open(DefaultPaths.Resolve(s.Model), s.Solver, s.Guidance, s.Batch, s.Latent, s.Load,
            s.Prompts is null ? null : PromptFile.Read(s.Prompts), s.ConfigDir);
        var unet = target.UNet;
        _ = DeepCachePlan.For(unet, s.Branch);   // a branch the model lacks fails here, before any work
        using (var check = target.CreateScheduler()) check.SetTimesteps(s.Steps);

        var macs = MacCounter.Count(unet, 2 * s.Batch, target.LatentSide, target.LatentSide, target.ContextLength);
        var configs = new List<CacheConfiguration> { new("no cache", "none", s.Steps, null, 1.0) };
        foreach (int n in s.Intervals.Where(n => n > 1))
        {
            int fewer = Math.Max(1, (int)Math.Round((double)s.Steps / n));
            configs.Add(new($"{fewer} steps", "fewer-steps", fewer, null, (double)s.Steps / fewer));
        }
        foreach (int n in s.Intervals)
        {
            var schedule = DeepCacheSchedule.Uniform(n);
            var plan = DeepCachePlan.For(unet, s.Branch);
            int full = schedule.Select(s.Steps).FullSteps.Count;
            double saved = plan.CachedSites.Sum(site => (double)macs.Of(site.Path));
            double mac = (double)s.Steps * macs.Total / (full * (double)macs.Total + (s.Steps - full) * (macs.Total - saved));
            configs.Add(new($"DeepCache N={n} branch {s.Branch}", "deepcache", s.Steps, () => new DeepCachePolicy(unet, schedule, s.Branch), mac)
                { Interval = n, Branch = s.Branch, SkippedFraction = (double)(s.Steps - full) / s.Steps });
        }

        var blockProfile = ProfileFor(target, s, cancel);
        var deltas = (s.Deltas ?? [.. new[] { 0.5, 1, 2, 4, 8, 16, 32 }.Select(m => new Threshold(m, OfMedian: true))])
            .Select(d => d.Resolve(blockProfile)).ToArray();
        foreach (double delta in deltas)
        {
            var schedule = ScheduleBuilder.FromProfile(blockProfile, delta);
            string solverClass = target.SchedulerConfig.ClassName;
            configs.Add(new($"BlockCache δ={delta:G3}", "blockcache", s.Steps, () => new BlockCachePolicy(unet, schedule, solverClass),
                schedule.MacSpeedup(macs)) { Delta = delta, SkippedFraction = schedule.SkippedFraction });
        }

        // The shipped schedule with and without its scale-shift adjustment (Sec. 3.4), when the model ships one.
        var shipped = target.ShippedScaleShift(s.Solver, s.Steps);
        // The adjustment's weights stay float32 (it casts what it adds to the cached value's type), on the U-Net's device.
        using var adjustment = shipped is { } files ? ScaleShiftAdjustment.Load(files.Adjustment) : null;
        adjustment?.to(unet.parameters().First().device);
        if (shipped is { } found && adjustment is not null)
        {
            var schedule = CacheSchedule.Load(found.Schedule);
            string solverClass = target.SchedulerConfig.ClassName;
            schedule.Validate(unet, solverClass, s.Steps);
            string name = $"BlockCache δ={schedule.Delta:G3} shipped";
            foreach (var adjusted in new[] { false, true })
                configs.Add(new(adjusted ? name + " + scale-shift" : name, adjusted ? "blockcache+scaleshift" : "blockcache-shipped",
                    s.Steps, () => new BlockCachePolicy(unet, schedule, solverClass, adjustment: adjusted ? adjustment : null),
                    schedule.MacSpeedup(macs)) { Delta = schedule.Delta, SkippedFraction = schedule.SkippedFraction });
        }

        var rows = ProgressView.Run("bench-cache", (long)configs.Count * (s.Repeats + 1), progress =>
        {
            long done = 0;
            return CacheBenchmark.Run(target, configs, s.Repeats, new Reporter(status => progress.Report((++done, status))), cancel);
        });
        var (dtypeName, deviceName) = RuntimeOptions.Describe(s.Load);
        Report(rows, s, $"{target.Description}, {dtypeName} on {deviceName}, {Runtime.ConvolutionKernels.Choice.ToString().ToLowerInvariant()} convolutions");
        return 0;
    }

    private static BlockProfile ProfileFor(BenchTargets.Target target, Settings s, CancellationToken cancel)
    {
        string? path = s.Profile ?? target.ShippedProfile(s.Solver, s.Steps);
        if (path is not null)
        {
            var shipped = BlockProfile.Load(path);
            if (shipped.NumInferenceSteps != s.Steps)
                throw new DiffusionCacheException($"{path}: profile is for {shipped.NumInferenceSteps} steps, the benchmark uses {s.Steps}");
            Console.WriteLine($"Block Caching profile: {path}");
            return shipped;
        }
        int conditions = Math.Min(s.ProfileConditions, target.MaxProfileConditions);
        Console.WriteLine($"Block Caching profile: measuring one ({conditions} conditions x 1 seed)");
        var inputs = target.ProfileInputs(conditions, 1);
        using var disposeInputs = inputs as IDisposable;
        return ProgressView.Run("profile", (long)conditions * s.Steps, p => ProfileRunner.Run(target.UNet, new ProfileSettings
        {
            ModelId = target.Description, Scheduler = target.SchedulerConfig, Steps = s.Steps,
        }, inputs, new Reporter<ProfileProgress>(x => p.Report((x.Done, $"generation {x.Generation + 1}"))), cancel));
    }

    private static void Report(IReadOnlyList<CacheBenchmarkRow> rows, Settings s, string model)
    {
        var table = new Table().Border(TableBorder.Simple).Title($"{Markup.Escape(model)}: {s.Solver}, {s.Steps} steps, batch {s.Batch}");
        foreach (var c in new[] { "configuration", "steps", "ms/image", "measured", "MACs", "measured/MACs", "cache MB", "PSNR", "SSIM" })
            table.AddColumn(c == "configuration" ? new TableColumn(c).NoWrap() : new TableColumn(c).RightAligned().NoWrap());
        foreach (var r in rows)
            table.AddRow(Markup.Escape(r.Name), r.Steps.ToString(), $"{r.LatencyMsPerImage:0.0}", $"{r.MeasuredSpeedup:0.00}x",
                $"{r.MacSpeedup:0.00}x", $"{r.MeasuredSpeedup / r.MacSpeedup:0.00}", $"{r.CacheMb:0.0}",
                double.IsInfinity(r.Psnr) ? "inf" : $"{r.Psnr:0.00}", $"{r.Ssim:0.0000}");
        AnsiConsole.Write(table);

        Directory.CreateDirectory(s.Out);
        var md = new StringBuilder();
        md.AppendLine($"# bench-cache: {model}, {s.Solver}, {s.Steps} steps, batch {s.Batch}, guidance {s.Guidance}").AppendLine();
        md.AppendLine($"Speedups are medians over {s.Repeats} rounds of the ratio to the uncached run of the same round; the range is the lowest and highest round.").AppendLine();
        md.AppendLine("| configuration | steps | ms/image | measured speedup | range | MAC speedup | measured/MAC | cache MB | PSNR | SSIM |");
        md.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var r in rows)
            md.AppendLine(string.Create(CultureInfo.InvariantCulture, $"| {r.Name} | {r.Steps} | {r.LatencyMsPerImage:0.0} | {r.MeasuredSpeedup:0.00}x | {r.MeasuredSpeedupLow:0.00}–{r.MeasuredSpeedupHigh:0.00} | {r.MacSpeedup:0.00}x | {r.MeasuredSpeedup / r.MacSpeedup:0.00} | {r.CacheMb:0.0} | {(double.IsInfinity(r.Psnr) ? "inf" : r.Psnr.ToString("0.00", CultureInfo.InvariantCulture))} | {r.Ssim:0.0000} |"));
        AtomicFile.WriteAllText(Path.Combine(s.Out, "bench-cache.md"), md.ToString());
        string rowsJson = JsonSerializer.Serialize(rows.Select(r => new
        {
            name = r.Name, kind = r.Kind, steps = r.Steps, latency_ms_per_image = r.LatencyMsPerImage,
            measured_speedup = r.MeasuredSpeedup, measured_speedup_low = r.MeasuredSpeedupLow,
            measured_speedup_high = r.MeasuredSpeedupHigh, mac_speedup = r.MacSpeedup, cache_mb = r.CacheMb,
            psnr = double.IsInfinity(r.Psnr) ? (double?)null : r.Psnr, ssim = r.Ssim, delta = r.Delta, interval = r.Interval,
            branch = r.Branch, skipped_fraction = r.SkippedFraction,
        }), new JsonSerializerOptions { WriteIndented = true });
        AtomicFile.WriteAllText(Path.Combine(s.Out, "bench-cache.json"), rowsJson);
        if (s.Json is not null) AtomicFile.WriteAllText(s.Json, rowsJson);
        SpeedPlot.Write(rows, Path.Combine(s.Out, "speed-vs-delta.png"), $"{model}: {s.Solver} {s.Steps} steps");
        if (Runtime.ConvolutionKernels.Summary() is string tuned) Console.WriteLine(tuned);
        Console.WriteLine($"wrote {Path.Combine(s.Out, "bench-cache.md")}, bench-cache.json, speed-vs-delta.png");
    }

    private sealed class Reporter(Action<string> report) : IProgress<string>
    {
        public void Report(string value) => report(value);
    }

    private sealed class Reporter<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
