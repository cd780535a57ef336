using System.Text.Json;
using DiffusionCache.Models.UNets;
using DiffusionCache.Pipelines;
using DiffusionCache.Schedulers;
using static TorchSharp.torch;

namespace DiffusionCache.Caching.BlockCaching;

/// <summary>The conditions and noise of a profile: P conditions x S seeds. Generation (p, s) samples condition p
/// from seed s's noise, so every condition sees the same noises.</summary>
public interface IProfileInputs
{
    int NumConditions { get; }
    int NumSeeds { get; }
    /// <summary>How the conditions and noise are made, recorded in the profile.</summary>
    string Description { get; }
    /// <summary>The request of generation (condition, seed): context and/or labels, unconditional context (with
    /// guidance), guidance scale, sample size, noise (a seed or an explicit x_T). <c>Steps</c> is overridden by
    /// the runner.</summary>
    SamplingRequest Request(int condition, int seed);
}

/// <summary>Where a profile run stands: generation <see cref="Generation"/> of <see cref="Generations"/>, step
/// <see cref="Step"/> of <see cref="Steps"/> done.</summary>
public sealed record ProfileProgress(int Generation, int Generations, int Condition, int Seed, int Step, int Steps)
{
    public long Done => (long)Generation * Steps + Step;
    public long Total => (long)Generations * Steps;
}

/// <summary>What to profile: model id, solver configuration, step count, targets.</summary>
public sealed record ProfileSettings
{
    public required string ModelId { get; init; }
    public string? ModelPath { get; init; }
    public required SchedulerConfig Scheduler { get; init; }
    /// <summary>The scheduler configuration as read (kept in the profile); optional.</summary>
    public JsonElement? SchedulerJson { get; init; }
    public required int Steps { get; init; }
    public BlockCachingTargets Targets { get; init; } = BlockCachingTargets.Transformers;
}

/// <summary>
/// Profiles a model (Block Caching Sec. 3.2): P x S uncached generations through the one sampling loop with a
/// <see cref="ChangeProfiler"/> attached, a fresh scheduler for each, in the order g = p*S + s; then the mean and
/// population standard deviation of L1_rel over them.
/// </summary>
public static class ProfileRunner
{
    public static BlockProfile Run(DiffusionUNet unet, ProfileSettings settings, IProfileInputs inputs,
        IProgress<ProfileProgress>? progress = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(unet);
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(inputs);
        if (settings.Steps < 1) throw new DiffusionCacheException($"steps must be at least 1, got {settings.Steps}");
        if (inputs.NumConditions < 1) throw new DiffusionCacheException($"conditions must be at least 1, got {inputs.NumConditions}");
        if (inputs.NumSeeds < 1) throw new DiffusionCacheException($"seeds must be at least 1, got {inputs.NumSeeds}");
        SchedulerFactory.Create(settings.Scheduler).Dispose();   // refuses an unsupported solver before any work

        using var profiler = new ChangeProfiler(unet, settings.Targets);
        int generations = inputs.NumConditions * inputs.NumSeeds;
        var rows = new List<ProfileGeneration>(generations);
        SamplingRequest? first = null;
        for (int p = 0; p < inputs.NumConditions; p++)
        {
            for (int s = 0; s < inputs.NumSeeds; s++)
            {
                cancel.ThrowIfCancellationRequested();
                int g = p * inputs.NumSeeds + s;
                var request = inputs.Request(p, s) with { Steps = settings.Steps };
                first ??= request;
                using var scheduler = SchedulerFactory.Create(settings.Scheduler);
                var observer = new ProgressObserver(progress, g, generations, p, s);
                using (CachedSampling.Sample(unet, scheduler, request, profiler, [observer], cancel)) { }
                if (profiler.Generations.Count != g + 1)
                    throw new DiffusionCacheException($"generation {g} did not complete");
                rows.Add(new ProfileGeneration(g, p, s, profiler.Generations[g]));
            }
        }

        var (mean, std) = BlockProfile.Aggregate([.. rows.Select(r => r.L1Rel)]);
        return new BlockProfile
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
            Mean = mean,
            Std = std,
        };
    }

    private sealed class ProgressObserver(IProgress<ProfileProgress>? progress, int g, int generations, int p, int s) : IStepObserver
    {
        public void EndStep(StepInfo step, Tensor latents) =>
            progress?.Report(new ProfileProgress(g, generations, p, s, step.Index + 1, step.Count));
    }
}
