using System.Globalization;
using DiffusionCache.Caching;
using DiffusionCache.Caching.Adaptive;
using DiffusionCache.Caching.BlockCaching;
using DiffusionCache.Caching.DeepCache;
using DiffusionCache.Pipelines;
using TorchSharp;

namespace DiffusionCache.Cli.Commands;

/// <summary>Turns a <c>--cache</c> argument (<see cref="CacheSpec"/>'s grammar, <see cref="CacheSpec.Help"/>) into a
/// policy factory for a pipeline, solver and step count, validating it before any work. "blockcache" uses the schedule
/// the model ships for that solver and step count (<c>cache/schedule-{solver}-{steps}.json</c>); "blockcache:ss" adds
/// the scale-shift adjustment shipped for it (<c>cache/scaleshift-{solver}-{steps}.safetensors</c>; named apart, so that
/// "blockcache" is the paper's method as reports name it, and <see cref="Default"/> where no cache is named). Without a schedule, "blockcache" falls back to
/// no cache and says so. The adaptive policies (blockcache-online, ucache) need nothing shipped.</summary>
internal sealed record CacheChoice(string Name, Func<ICachePolicy>? Create) : IDisposable
{
    /// <summary>What the policies share and the choice owns (a loaded scale-shift adjustment).</summary>
    private IDisposable? Owned { get; init; }

    /// <summary>What <see cref="Name"/> leaves out that changes the samples: for Block Caching, the first 16 hex digits of
    /// the SHA-256 of its schedule and scale-shift adjustment (a retrained adjustment or another schedule with the same δ
    /// and skipped share keeps the name); empty for the policies their name describes in full.</summary>
    public string Fingerprint { get; init; } = "";

    public void Dispose() => Owned?.Dispose();

    /// <param name="choice">The <c>--cache</c> text.</param>
    /// <param name="pipeline">The pipeline whose U-Net the policy attaches to.</param>
    /// <param name="solver">a solver name, or null for the pipeline folder's own scheduler.</param>
    /// <param name="steps">The step count of the generations.</param>
    public static CacheChoice Resolve(string choice, LatentDiffusionPipeline pipeline, string? solver, int steps)
    {
        string solverClass = pipeline.SolverClass(solver);
        solver ??= Schedulers.Solvers.NameOf(solverClass);
        var spec = CacheSpec.Parse(choice);
        var unet = pipeline.UNet;
        switch (spec.Method)
        {
            case CacheMethod.None:
                return new("no cache", null);
            case CacheMethod.DeepCache:
                return DeepCache(spec, pipeline, steps);
            case CacheMethod.BlockCacheOnline:
            {
                using (new OnlineBlockCachePolicy(unet, spec.Online!)) { }   // targets and knobs checked now
                var options = spec.Online!;
                return new($"Block Caching online (threshold {options.Threshold.ToString("G4", CultureInfo.InvariantCulture)}, " +
                    $"{options.EffectiveTargets}{Forecast(spec)})", () => new OnlineBlockCachePolicy(unet, options));
            }
            case CacheMethod.UCache:
            {
                var options = spec.UCache!;
                using (new StepCachePolicy(unet, options)) { }   // the model is checked now
                return new($"ucache (threshold {options.Threshold.ToString("G4", CultureInfo.InvariantCulture)}, steps " +
                    $"{options.Start * 100:0}-{options.End * 100:0} %, probe {(options.Probe == StepProbe.Input ? "input" : "first-block")}{Forecast(spec)})",
                    () => new StepCachePolicy(unet, options));
            }
            case CacheMethod.BlockCache when spec.ScheduleFile is { } file:
                if (!File.Exists(file))
                    throw new DiffusionCacheException($"--cache '{choice}': no such schedule file, and not a method ({CacheSpec.Help})");
                string? adjustmentFile = !spec.ScaleShift ? null : spec.AdjustmentFile ?? ScaleShiftAdjustment.DefaultPathFor(file);
                if (adjustmentFile is not null && !File.Exists(adjustmentFile))
                    throw new DiffusionCacheException($"--cache '{choice}': no scale-shift adjustment {adjustmentFile} (train one with 'diffcache train scaleshift --schedule {file}')");
                return FromSchedule(file, pipeline, solverClass, steps, spec.ForecastOrder, adjustmentFile);
            case CacheMethod.BlockCache when spec.Delta is double delta:
            {
                // eq. 7 at another δ over the model's shipped profile (eq. 6): the speed-quality knob without a file.
                string path = ShippedProfile(pipeline, solver, steps);
                if (!File.Exists(path))
                    throw new DiffusionCacheException($"--cache {choice}: the model ships no Block Caching profile for {solver} with {steps} steps ({path}); " +
                        "make one with 'diffcache profile' and 'diffcache schedule'");
                var schedule = ScheduleBuilder.FromProfile(BlockProfile.Load(path), delta);
                return FromSchedule(schedule, pipeline, solverClass, steps, spec.ForecastOrder);
            }
            case CacheMethod.BlockCache when !spec.ScaleShift:
            {
                string path = ShippedSchedule(pipeline, solver, steps);
                if (!File.Exists(path))
                {
                    Console.WriteLine($"note: the model ships no Block Caching schedule for {solver} with {steps} steps ({path}); sampling uncached");
                    return new("no cache", null);
                }
                return FromSchedule(path, pipeline, solverClass, steps, spec.ForecastOrder);
            }
            default:
            {
                string path = ShippedSchedule(pipeline, solver, steps), adjustment = ShippedAdjustment(pipeline, solver, steps);
                if (!File.Exists(path) || !File.Exists(adjustment))
                    throw new DiffusionCacheException($"--cache {choice}: the model ships no schedule and scale-shift adjustment for {solver} " +
                        $"with {steps} steps ({path}, {adjustment}); train one with 'diffcache train scaleshift'");
                return FromSchedule(path, pipeline, solverClass, steps, spec.ForecastOrder, adjustment);
            }
        }
    }

    private static string Forecast(CacheSpec spec) => spec.ForecastOrder > 0 ? $", Taylor order {spec.ForecastOrder}" : "";

    private static CacheChoice DeepCache(CacheSpec spec, LatentDiffusionPipeline pipeline, int steps)
    {
        var (interval, branch, center, power) = spec.DeepCache;
        var schedule = center is int c && power is double p ? DeepCacheSchedule.NonUniform(interval, c, p) : DeepCacheSchedule.Uniform(interval);
        _ = schedule.Select(steps);                 // a bad N, center or power fails here, before any work
        _ = DeepCachePlan.For(pipeline.UNet, branch);
        int order = spec.ForecastOrder;
        return new($"DeepCache {schedule} branch {branch}{Forecast(spec)}", () => new DeepCachePolicy(pipeline.UNet, schedule, branch, order));
    }

    /// <summary>The choice a command makes when the user names none: "blockcache:ss" where the model ships a schedule
    /// and a scale-shift adjustment for this solver and step count (every shipped adjustment beats plain caching on the
    /// embedded model, docs/paper/scale-shift.md), else "blockcache" (the schedule alone, or no cache without one).</summary>
    public static string Default(LatentDiffusionPipeline pipeline, string? solver, int steps)
    {
        solver ??= Schedulers.Solvers.NameOf(pipeline.SolverClass(null));
        return File.Exists(ShippedSchedule(pipeline, solver, steps)) && File.Exists(ShippedAdjustment(pipeline, solver, steps)) ? "blockcache:ss" : "blockcache";
    }

    public static string ShippedSchedule(LatentDiffusionPipeline pipeline, string solver, int steps) =>
        Path.Combine(pipeline.Folder, "cache", $"schedule-{solver}-{steps}.json");

    public static string ShippedProfile(LatentDiffusionPipeline pipeline, string solver, int steps) =>
        Path.Combine(pipeline.Folder, "cache", $"profile-{solver}-{steps}.json");

    public static string ShippedAdjustment(LatentDiffusionPipeline pipeline, string solver, int steps) =>
        Path.Combine(pipeline.Folder, "cache", $"scaleshift-{solver}-{steps}.safetensors");

    /// <summary>The schedule's content and the adjustment file's bytes, hashed: the name says only δ and the skipped
    /// share, which two different schedules (another profile, a hand-edited file) or a retrained adjustment can share.</summary>
    private static string Hash(CacheSchedule schedule, string? adjustmentPath)
    {
        using var hash = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        hash.AppendData(System.Text.Encoding.UTF8.GetBytes(schedule.ToJson()));
        if (adjustmentPath is not null) hash.AppendData(File.ReadAllBytes(adjustmentPath));
        return Convert.ToHexStringLower(hash.GetHashAndReset())[..16];
    }

    private static CacheChoice FromSchedule(string path, LatentDiffusionPipeline pipeline, string solverClass, int steps,
        int forecastOrder, string? adjustmentPath = null) =>
        FromSchedule(CacheSchedule.Load(path), pipeline, solverClass, steps, forecastOrder, adjustmentPath);

    private static CacheChoice FromSchedule(CacheSchedule schedule, LatentDiffusionPipeline pipeline, string solverClass, int steps,
        int forecastOrder, string? adjustmentPath = null)
    {
        schedule.Validate(pipeline.UNet, solverClass, steps);
        var adjustment = adjustmentPath is null ? null : ScaleShiftAdjustment.Load(adjustmentPath);
        adjustment?.Validate(schedule);
        // Its weights stay float32 (it casts what it adds to the cached value's type), on the U-Net's device.
        adjustment?.to(pipeline.UNet.parameters().First().device);
        string name = $"Block Caching{(schedule.Delta is double d ? $" δ={d:G3}" : "")} ({schedule.SkippedFraction:P0} of block evaluations skipped)" +
            (adjustment is null ? "" : " + scale-shift") + (forecastOrder > 0 ? $", Taylor order {forecastOrder}" : "");
        // The policies share the adjustment's weights (read-only at inference); the choice owns it.
        return new(name, () => new BlockCachePolicy(pipeline.UNet, schedule, solverClass, adjustment: adjustment, forecastOrder: forecastOrder))
        {
            Owned = adjustment,
            Fingerprint = Hash(schedule, adjustmentPath),
        };
    }
}
