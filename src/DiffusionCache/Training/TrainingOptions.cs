namespace DiffusionCache.Training;

/// <summary>How to run a training job. <see cref="TotalSteps"/> counts optimizer steps over all epochs.</summary>
public sealed record TrainingOptions
{
    public required string CheckpointDir { get; init; }
    public required long TotalSteps { get; init; }
    public int BatchSize { get; init; } = 128;
    public double LearningRate { get; init; } = 2e-4;
    public double WeightDecay { get; init; } = 0.0;
    public int WarmupSteps { get; init; } = 200;
    public double EmaDecay { get; init; } = 0.999;
    public int CheckpointEvery { get; init; } = 500;
    public double GradientClip { get; init; } = 1.0;
    public long Seed { get; init; } = 0;

    public void Validate()
    {
        if (TotalSteps < 1) throw new DiffusionCacheException("training needs at least one step");
        if (BatchSize < 1) throw new DiffusionCacheException("batch size must be positive");
        if (LearningRate <= 0 || !double.IsFinite(LearningRate)) throw new DiffusionCacheException("learning rate must be positive");
        if (CheckpointEvery < 1) throw new DiffusionCacheException("checkpoint interval must be positive");
        if (EmaDecay is <= 0 or >= 1) throw new DiffusionCacheException("EMA decay must be in (0, 1)");
    }
}

/// <summary>Where a running job stands, reported after every step.</summary>
public sealed record TrainingProgress(long Step, long TotalSteps, int Epoch, double Loss, double SmoothedLoss,
    double ItemsPerSecond, TimeSpan Elapsed, TimeSpan Remaining);
