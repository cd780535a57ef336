namespace DiffusionCache.Schedulers;

/// <summary>Short solver names for the command line, each a diffusers scheduler class configured with a model's
/// training noise schedule (betas, timestep count and spacing, prediction type) and the sampling options Stable
/// Diffusion pipelines use (PLMS without Runge-Kutta warm-up, second-order DPM-Solver++, no clipping).</summary>
public static class Solvers
{
    /// <summary>Solver name (case-insensitive: ddim, ddpm, plms, dpm++, euler) to diffusers scheduler class.</summary>
    public static IReadOnlyDictionary<string, string> Classes { get; } = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase)
    {
        ["ddim"] = SchedulerConfig.Ddim,
        ["ddpm"] = SchedulerConfig.Ddpm,
        ["plms"] = SchedulerConfig.Pndm,
        ["dpm++"] = SchedulerConfig.DpmSolverMultistep,
        ["euler"] = SchedulerConfig.EulerDiscrete,
    };

    /// <summary>The solver name of a diffusers scheduler class (PNDMScheduler → plms).</summary>
    public static string NameOf(string className) =>
        Classes.FirstOrDefault(c => c.Value == className).Key ?? throw new DiffusionCacheException($"no solver name for scheduler class '{className}'");

    /// <summary>The config of <paramref name="solver"/> for a model trained with <paramref name="training"/>: the
    /// class's defaults with the training betas, timestep count, spacing, <c>steps_offset</c>, prediction type and
    /// <c>set_alpha_to_one</c>; <c>clip_sample</c> off, <c>skip_prk_steps</c> on, <c>solver_order</c> 2.</summary>
    /// <param name="solver">A key of <see cref="Classes"/>.</param>
    /// <param name="training">The model's own scheduler config (usually its folder's).</param>
    /// <exception cref="DiffusionCacheException">An unknown solver name.</exception>
    public static SchedulerConfig For(string solver, SchedulerConfig training)
    {
        if (!Classes.TryGetValue(solver, out var cls))
            throw new DiffusionCacheException($"unknown solver '{solver}' (choose {string.Join(", ", Classes.Keys)})");
        return SchedulerConfig.Defaults(cls) with
        {
            NumTrainTimesteps = training.NumTrainTimesteps,
            BetaStart = training.BetaStart,
            BetaEnd = training.BetaEnd,
            BetaSchedule = training.BetaSchedule,
            TrainedBetas = training.TrainedBetas,
            PredictionType = training.PredictionType,
            TimestepSpacing = training.TimestepSpacing,
            StepsOffset = training.StepsOffset,
            ClipSample = false,
            SetAlphaToOne = training.SetAlphaToOne,
            SkipPrkSteps = true,
            SolverOrder = 2,
        };
    }
}
