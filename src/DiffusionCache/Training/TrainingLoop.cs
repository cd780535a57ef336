using System.Diagnostics;
using System.Globalization;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Training;

/// <summary>
/// The loop every trainer shares: seeded epoch permutations, AdamW with linear warm-up, gradient clipping, EMA,
/// periodic checkpoints, resume, a CSV log and progress reports. Deterministic given the seed: data order depends
/// only on (seed, epoch) and all other randomness comes from one generator whose state is checkpointed, so an
/// interrupted run resumed from its checkpoint continues exactly as if it had not stopped.
/// </summary>
public sealed class TrainingLoop
{
    /// <summary>Computes the loss of one batch. Gets the dataset indices of the batch and the job's generator
    /// (for noise, timesteps, dropout).</summary>
    public delegate Tensor LossFunction(Tensor indices, Generator generator);

    /// <summary>Computes the loss of one batch and its gradients itself (for a loss too large to hold in one graph,
    /// e.g. one backward pass per denoising step of a trajectory); returns the loss value.</summary>
    public delegate double GradientFunction(Tensor indices, Generator generator);

    private readonly nn.Module _model;
    private readonly TrainingOptions _options;
    private readonly long _datasetSize;

    /// <summary>A loop over <paramref name="datasetSize"/> items. Throws <see cref="DiffusionCacheException"/> when
    /// <paramref name="options"/> are invalid (<see cref="TrainingOptions.Validate"/>) or the dataset is smaller than
    /// one batch.</summary>
    /// <param name="model">The model to train in place: its parameters with <c>requires_grad</c> are optimized, all
    /// of them are averaged and checkpointed.</param>
    /// <param name="datasetSize">Number of items; the loss functions get indices in [0, datasetSize).</param>
    /// <param name="options">How to train.</param>
    public TrainingLoop(nn.Module model, long datasetSize, TrainingOptions options)
    {
        options.Validate();
        if (datasetSize < options.BatchSize) throw new DiffusionCacheException($"dataset of {datasetSize} items is smaller than one batch");
        _model = model;
        _datasetSize = datasetSize;
        _options = options;
    }

    /// <summary>Optimizer steps per epoch: dataset size / batch size, rounded down.</summary>
    public long StepsPerEpoch => _datasetSize / _options.BatchSize;
    /// <summary>The CSV log, <c>{CheckpointDir}/log.csv</c>: <c>step,epoch,loss,lr,elapsed_s</c>, one line per step
    /// (lines after the checkpoint are dropped on resume).</summary>
    public string LogPath => Path.Combine(_options.CheckpointDir, "log.csv");

    /// <summary>Trains until <see cref="TrainingOptions.TotalSteps"/> or cancellation (after saving a checkpoint).
    /// Returns the EMA of the weights; the caller owns it.</summary>
    public ExponentialMovingAverage Run(LossFunction loss, IProgress<TrainingProgress>? progress = null,
        CancellationToken cancel = default) =>
        Run((indices, generator) =>
        {
            var batchLoss = loss(indices, generator);
            batchLoss.backward();
            return batchLoss.item<float>();
        }, progress, cancel);

    /// <inheritdoc cref="Run(LossFunction, IProgress{TrainingProgress}?, CancellationToken)"/>
    public ExponentialMovingAverage Run(GradientFunction gradients, IProgress<TrainingProgress>? progress = null,
        CancellationToken cancel = default)
    {
        var o = _options;
        var parameters = _model.parameters().Where(p => p.requires_grad).ToList();
        var optimizer = optim.AdamW(parameters, o.LearningRate, weight_decay: o.WeightDecay);
        var ema = new ExponentialMovingAverage(_model, o.EmaDecay);
        var generator = new Generator((ulong)o.Seed);
        long step = 0;
        double previousSeconds = 0;
        if (TrainingCheckpoint.Exists(o.CheckpointDir))
        {
            var state = TrainingCheckpoint.Load(o.CheckpointDir, _model, ema, optimizer, generator);
            step = state.Step;
            previousSeconds = state.ElapsedSeconds;
            TruncateLog(step);
        }
        else
        {
            Directory.CreateDirectory(o.CheckpointDir);
            File.WriteAllText(LogPath, "step,epoch,loss,lr,elapsed_s\n");
        }

        _model.train();
        var clock = Stopwatch.StartNew();
        long startStep = step;
        double smoothed = double.NaN;
        Tensor? order = null;
        long orderEpoch = -1;
        try
        {
            while (step < o.TotalSteps)
            {
                long epoch = step / StepsPerEpoch;
                if (epoch != orderEpoch)
                {
                    order?.Dispose();
                    order = randperm(_datasetSize, generator: new Generator((ulong)(o.Seed * 1_000_003 + epoch)));
                    orderEpoch = epoch;
                }
                long offset = step % StepsPerEpoch * o.BatchSize;
                double lr = o.LearningRate * Math.Min(1.0, (step + 1.0) / Math.Max(1, o.WarmupSteps));
                foreach (var group in optimizer.ParamGroups) group.LearningRate = lr;

                double value;
                using (var scope = NewDisposeScope())
                {
                    optimizer.zero_grad();
                    value = gradients(order!.narrow(0, offset, o.BatchSize), generator);
                    if (o.GradientClip > 0) nn.utils.clip_grad_norm_(parameters, o.GradientClip);
                    optimizer.step();
                }
                if (!double.IsFinite(value)) throw new DiffusionCacheException($"training diverged at step {step}: loss {value}");
                ema.Update();
                step++;
                smoothed = double.IsNaN(smoothed) ? value : 0.98 * smoothed + 0.02 * value;
                double elapsed = previousSeconds + clock.Elapsed.TotalSeconds;
                File.AppendAllText(LogPath, string.Create(CultureInfo.InvariantCulture,
                    $"{step},{epoch},{value:G6},{lr:G4},{elapsed:F1}\n"));

                double rate = (step - startStep) * o.BatchSize / Math.Max(1e-9, clock.Elapsed.TotalSeconds);
                progress?.Report(new TrainingProgress(step, o.TotalSteps, (int)epoch, value, smoothed, rate,
                    TimeSpan.FromSeconds(elapsed), TimeSpan.FromSeconds((o.TotalSteps - step) * o.BatchSize / Math.Max(1e-9, rate))));

                bool last = step == o.TotalSteps;
                if (last || step % o.CheckpointEvery == 0 || cancel.IsCancellationRequested)
                    TrainingCheckpoint.Save(o.CheckpointDir, _model, ema, optimizer, generator,
                        new TrainingCheckpoint.State(step, ema.Updates, elapsed));
                cancel.ThrowIfCancellationRequested();
            }
        }
        catch
        {
            ema.Dispose();
            throw;
        }
        finally
        {
            order?.Dispose();
            _model.eval();
        }
        return ema;
    }

    /// <summary>Drops log lines written after the checkpoint we resume from, so the log has each step once.</summary>
    private void TruncateLog(long step)
    {
        if (!File.Exists(LogPath)) return;
        var kept = File.ReadLines(LogPath).Where((line, i) => i == 0 ||
            long.TryParse(line.AsSpan(0, Math.Max(0, line.IndexOf(','))), CultureInfo.InvariantCulture, out long s) && s <= step).ToList();
        File.WriteAllLines(LogPath, kept);
    }
}
