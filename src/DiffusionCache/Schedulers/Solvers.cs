namespace DiffusionCache.Schedulers;

/// <summary>Short solver names for the command line, each a diffusers scheduler class configured with a model's
/// training noise schedule (betas, timestep count and spacing, prediction type) and the sampling options Stable
/// Diffusion pipelines use (PLMS without Runge-Kutta warm-up, second-order DPM-Solver++, no clipping).</summary>
public static class Solvers
{
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
