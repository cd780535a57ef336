namespace DiffusionCache.Training;

/// <summary>How to run a training job. <see cref="TotalSteps"/> counts optimizer steps over all epochs.</summary>
public sealed record TrainingOptions
{
    /// <summary>The job's folder: the resumable <c>checkpoint/</c> and <c>log.csv</c>. A job that finds a checkpoint
    /// here resumes from it.</summary>
    public required string CheckpointDir { get; init; }

    /// <summary>Optimizer steps of the whole job, over all epochs and runs (a resumed job stops here too); at least
    /// 1.</summary>
    public required long TotalSteps { get; init; }

    /// <summary>Dataset items per optimizer step; at least 1 and at most the dataset size. Each epoch is
    /// <c>datasetSize / BatchSize</c> steps (the remainder of the epoch's permutation is skipped).</summary>
    public int BatchSize { get; init; } = 128;

    /// <summary>AdamW's learning rate once warm-up is over; positive and finite.</summary>
    public double LearningRate { get; init; } = 2e-4;

    /// <summary>AdamW's decoupled weight decay; 0 for none.</summary>
    public double WeightDecay { get; init; } = 0.0;

    /// <summary>Steps of linear warm-up: step s (from 0) uses <c>LearningRate * min(1, (s + 1) / WarmupSteps)</c>;
    /// 0 or 1 for none.</summary>
    public int WarmupSteps { get; init; } = 200;

    /// <summary>The largest decay of the weights' <see cref="ExponentialMovingAverage"/>; in (0, 1).</summary>
    public double EmaDecay { get; init; } = 0.999;

    /// <summary>Steps between checkpoints; at least 1. One is also saved after the last step and on
    /// cancellation.</summary>
    public int CheckpointEvery { get; init; } = 500;

    /// <summary>The largest global L2 norm of the gradients (clipped to it before each step); 0 or less for no
    /// clipping.</summary>
    public double GradientClip { get; init; } = 1.0;

    /// <summary>Seeds the data order of every epoch and the job's generator (noise, timesteps, augmentation). Weight
    /// initialisation is not covered: seed torch before building the model.</summary>
    public long Seed { get; init; } = 0;

    /// <summary>Throws <see cref="DiffusionCacheException"/> when <see cref="TotalSteps"/>, <see cref="BatchSize"/>,
    /// <see cref="LearningRate"/>, <see cref="CheckpointEvery"/> or <see cref="EmaDecay"/> is out of range.</summary>
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
/// <param name="Step">Optimizer steps done in the whole job, steps of earlier runs included.</param>
/// <param name="TotalSteps">The job's <see cref="TrainingOptions.TotalSteps"/>.</param>
/// <param name="Epoch">The epoch of the step just done, from 0.</param>
/// <param name="Loss">The loss of the step just done.</param>
/// <param name="SmoothedLoss">An exponential average of the loss (weight 0.02 per step) over this run.</param>
/// <param name="ItemsPerSecond">Dataset items trained per second in this run.</param>
/// <param name="Elapsed">Training time of the whole job, earlier runs included.</param>
/// <param name="Remaining">Estimated time to <paramref name="TotalSteps"/> at this run's rate.</param>
public sealed record TrainingProgress(long Step, long TotalSteps, int Epoch, double Loss, double SmoothedLoss,
    double ItemsPerSecond, TimeSpan Elapsed, TimeSpan Remaining);
