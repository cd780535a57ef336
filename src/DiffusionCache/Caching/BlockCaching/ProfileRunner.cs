using System.Globalization;
using System.Text.Json;
using DiffusionCache.Sharding;
using DiffusionCache.Models.UNets;
using DiffusionCache.Pipelines;
using DiffusionCache.Schedulers;
using static TorchSharp.torch;

namespace DiffusionCache.Caching.BlockCaching;

/// <summary>The conditions and noise of a profile: P conditions x S seeds. Generation (p, s) samples condition p
/// from seed s's noise, so every condition sees the same noises.</summary>
public interface IProfileInputs
{
    /// <summary>P, the number of conditions (prompts, labels or contexts); at least 1.</summary>
    int NumConditions { get; }
    /// <summary>S, the number of noise seeds each condition is sampled from; at least 1.</summary>
    int NumSeeds { get; }
    /// <summary>How the conditions and noise are made, recorded in the profile.</summary>
    string Description { get; }
    /// <summary>The request of generation (condition, seed): context and/or labels, unconditional context (with
    /// guidance), guidance scale, sample size, noise (a seed or an explicit x_T). <c>Steps</c> is overridden by
    /// the runner.</summary>
    /// <param name="condition">p, 0..<see cref="NumConditions"/> - 1.</param>
    /// <param name="seed">s, 0..<see cref="NumSeeds"/> - 1.</param>
    /// <remarks>The request's tensors belong to the inputs object and stay valid until it is disposed; the caller
    /// does not dispose them.</remarks>
    SamplingRequest Request(int condition, int seed);
}

/// <summary>Where a profile run stands: generation <see cref="Generation"/> of <see cref="Generations"/>, step
/// <see cref="Step"/> of <see cref="Steps"/> done.</summary>
/// <param name="Generation">The running generation's index g = p * S + s (0-based).</param>
/// <param name="Generations">P x S, the number of generations of the run.</param>
/// <param name="Condition">The running generation's condition p.</param>
/// <param name="Seed">The running generation's seed s.</param>
/// <param name="Step">Steps (U-Net calls) done in this generation, 1..<see cref="Steps"/>.</param>
/// <param name="Steps">U-Net calls per generation.</param>
public sealed record ProfileProgress(int Generation, int Generations, int Condition, int Seed, int Step, int Steps)
{
    /// <summary>Steps done over the whole run, for a progress bar out of <see cref="Total"/>.</summary>
    public long Done => (long)Generation * Steps + Step;
    /// <summary>Steps of the whole run: <see cref="Generations"/> x <see cref="Steps"/>.</summary>
    public long Total => (long)Generations * Steps;
}

/// <summary>What to profile: model id, solver configuration, step count, targets.</summary>
public sealed record ProfileSettings
{
    /// <summary>Model id recorded as the profile's <see cref="BlockProfile.Model"/> (usually the folder's name).
    /// </summary>
    public required string ModelId { get; init; }
    /// <summary>Where the model was loaded from, recorded as <see cref="BlockProfile.ModelPath"/>; optional.</summary>
    public string? ModelPath { get; init; }
    /// <summary>The solver; a fresh scheduler is made from it for every generation.</summary>
    public required SchedulerConfig Scheduler { get; init; }
    /// <summary>The scheduler configuration as read (kept in the profile); optional.</summary>
    public JsonElement? SchedulerJson { get; init; }
    /// <summary>N, the number of inference steps passed to <c>set_timesteps</c>; at least 1.</summary>
    public required int Steps { get; init; }
    /// <summary>Which blocks to profile; transformers by default.</summary>
    public BlockCachingTargets Targets { get; init; } = BlockCachingTargets.Transformers;
}

/// <summary>
/// Profiles a model (Block Caching Sec. 3.2): P x S uncached generations through the one sampling loop with a
/// <see cref="ChangeProfiler"/> attached, a fresh scheduler for each, in the order g = p*S + s; then the mean and
/// population standard deviation of L1_rel over them.
/// </summary>
public static class ProfileRunner
{
    /// <summary>Runs the P x S generations and returns the profile (not yet saved): the single-process run, which is
    /// shard 0/1 merged by <see cref="ProfileShard.Merge"/>, the same path every sharded run takes.</summary>
    /// <param name="unet">The model to profile; a <see cref="ChangeProfiler"/> is attached to it while it runs.</param>
    /// <param name="settings">Model id, solver, step count and targets.</param>
    /// <param name="inputs">The conditions and noise; <see cref="SamplingRequest.Steps"/> of its requests is
    /// replaced by <see cref="ProfileSettings.Steps"/>.</param>
    /// <param name="progress">Told after every step of every generation; optional.</param>
    /// <param name="cancel">Checked between generations and steps.</param>
    /// <exception cref="DiffusionCacheException">Invalid counts, an unsupported solver, or a model the profiler
    /// cannot measure.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancel"/> was triggered.</exception>
    public static BlockProfile Run(DiffusionUNet unet, ProfileSettings settings, IProfileInputs inputs,
        IProgress<ProfileProgress>? progress = null, CancellationToken cancel = default) =>
        ProfileShard.Merge([RunShard(unet, settings, inputs, Shard.Whole, progress, cancel)]);

    /// <summary>The run descriptor of a profile, which shards of one run share and a merge compares: model id,
    /// solver and its configuration, steps, targets, P, S, the inputs' description and guidance, and the shard
    /// count.</summary>
    /// <param name="settings">What is profiled.</param>
    /// <param name="inputs">The conditions and noise.</param>
    /// <param name="shards">N, the number of shards of the run.</param>
    public static IReadOnlyDictionary<string, string> Descriptor(ProfileSettings settings, IProfileInputs inputs, int shards)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(inputs);
        var first = inputs.Request(0, 0);
        return new SortedDictionary<string, string>(StringComparer.Ordinal)
        {
            ["model"] = settings.ModelId,
            ["solver"] = settings.Scheduler.ClassName,
            ["scheduler_config"] = settings.SchedulerJson?.GetRawText() ?? "",
            ["steps"] = settings.Steps.ToString(CultureInfo.InvariantCulture),
            ["targets"] = settings.Targets.Name,
            ["conditions"] = inputs.NumConditions.ToString(CultureInfo.InvariantCulture),
            ["seeds"] = inputs.NumSeeds.ToString(CultureInfo.InvariantCulture),
            ["inputs"] = inputs.Description,
            ["guidance"] = (first.UsesGuidance ? first.GuidanceScale : 1.0).ToString("R", CultureInfo.InvariantCulture),
            ["shards"] = shards.ToString(CultureInfo.InvariantCulture),
        };
    }

    /// <summary>Runs shard <paramref name="shard"/>'s generations, g in <see cref="Shard.Range"/> of P x S (each
    /// exactly as in the whole run: a fresh scheduler, the request of (p, s)), and returns them as a partial
    /// profile.</summary>
    /// <param name="unet">The model to profile; a <see cref="ChangeProfiler"/> is attached to it while it runs.</param>
    /// <param name="settings">Model id, solver, step count and targets.</param>
    /// <param name="inputs">The conditions and noise.</param>
    /// <param name="shard">Which share of the generations to run; <see cref="Shard.Whole"/> for all.</param>
    /// <param name="progress">Told after every step of every generation of the shard; optional.</param>
    /// <param name="cancel">Checked between generations and steps.</param>
    /// <exception cref="DiffusionCacheException">Invalid counts, more shards than generations, an unsupported
    /// solver, or a model the profiler cannot measure.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancel"/> was triggered.</exception>
    public static ProfileShard RunShard(DiffusionUNet unet, ProfileSettings settings, IProfileInputs inputs, Shard shard,
        IProgress<ProfileProgress>? progress = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(unet);
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(inputs);
        if (settings.Steps < 1) throw new DiffusionCacheException($"steps must be at least 1, got {settings.Steps}");
        if (inputs.NumConditions < 1) throw new DiffusionCacheException($"conditions must be at least 1, got {inputs.NumConditions}");
        if (inputs.NumSeeds < 1) throw new DiffusionCacheException($"seeds must be at least 1, got {inputs.NumSeeds}");
        shard.Validate();
        int generations = inputs.NumConditions * inputs.NumSeeds;
        if (shard.Count > generations)
            throw new DiffusionCacheException($"{shard.Count} shards for {generations} generations (conditions x seeds): use at most {generations} shards");
        SchedulerFactory.Create(settings.Scheduler).Dispose();   // refuses an unsupported solver before any work
        var run = Descriptor(settings, inputs, shard.Count);

        using var profiler = new ChangeProfiler(unet, settings.Targets);
        var (start, end) = shard.Range(generations);
        var rows = new List<ProfileGeneration>(end - start);
        SamplingRequest? first = null;
        for (int g = start; g < end; g++)
        {
            cancel.ThrowIfCancellationRequested();
            int p = g / inputs.NumSeeds, s = g % inputs.NumSeeds;
            var request = inputs.Request(p, s) with { Steps = settings.Steps };
            first ??= request;
            using var scheduler = SchedulerFactory.Create(settings.Scheduler);
            var observer = new ProgressObserver(progress, g, generations, p, s);
            using (CachedSampling.Sample(unet, scheduler, request, profiler, [observer], cancel)) { }
            if (profiler.Generations.Count != rows.Count + 1)
                throw new DiffusionCacheException($"generation {g} did not complete");
            rows.Add(new ProfileGeneration(g, p, s, profiler.Generations[rows.Count]));
        }

        return new ProfileShard
        {
            Shard = shard,
            Run = run,
            Partial = new BlockProfile
            {
                Model = settings.ModelId,
                ModelPath = settings.ModelPath,
                Solver = settings.Scheduler.ClassName,
                SchedulerConfig = settings.SchedulerJson,
                NumInferenceSteps = settings.Steps,
                Timesteps = profiler.Timesteps,
                GuidanceScale = first!.UsesGuidance ? first.GuidanceScale : 1.0,
                Targets = settings.Targets,
                Blocks = profiler.Blocks,
                NumConditions = inputs.NumConditions,
                NumSeeds = inputs.NumSeeds,
                Conditions = inputs.Description,
                Batch = first.Batch * (first.UsesGuidance ? 2 : 1),
                SampleHeight = first.Height,
                SampleWidth = first.Width,
                ContextLength = first.Context is null ? 0 : (int)first.Context.shape[1],
                Generations = rows,
                Mean = [],
                Std = [],
            },
        };
    }

    private sealed class ProgressObserver(IProgress<ProfileProgress>? progress, int g, int generations, int p, int s) : IStepObserver
    {
        public void EndStep(StepInfo step, Tensor latents) =>
            progress?.Report(new ProfileProgress(g, generations, p, s, step.Index + 1, step.Count));
    }
}
