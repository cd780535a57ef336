using System.Diagnostics;
using DiffusionCache.Models.Seam;
using DiffusionCache.Pipelines;
using static TorchSharp.torch;

namespace DiffusionCache.Caching;

/// <summary>
/// A policy whose own time is measured: everything it does outside the model compute it asks for — deciding, keeping
/// its cache, answering from it, its step callbacks. That is a policy's overhead measured directly (issue #13's
/// decision-cost bar), without the round-to-round noise of comparing whole generations, whose spread on a 2-core
/// machine is several times the 2 % being judged. libtorch's CPU operations are synchronous, so wall time inside the
/// policy is the policy's cost. Wraps and owns <paramref name="inner"/>; nested block calls are each counted once.
/// </summary>
/// <param name="inner">The policy to measure.</param>
public sealed class TimedPolicy(ICachePolicy inner) : ICachePolicy
{
    private long _ticks;

    /// <summary>The policy's own time since creation (or <see cref="Reset"/>).</summary>
    public TimeSpan OwnTime => TimeSpan.FromSeconds(_ticks / (double)Stopwatch.Frequency);

    /// <summary>Starts counting from zero.</summary>
    public void Reset() => _ticks = 0;

    /// <inheritdoc />
    public string Name => inner.Name;

    /// <inheritdoc />
    public CacheStatistics Statistics => inner.Statistics;

    /// <inheritdoc />
    public BlockOutput Run(BlockCall call, Func<BlockOutput> compute)
    {
        long start = Stopwatch.GetTimestamp();
        try
        {
            return inner.Run(call, () =>
            {
                _ticks += Stopwatch.GetTimestamp() - start;   // the model's compute is not the policy's time
                try { return compute(); }
                finally { start = Stopwatch.GetTimestamp(); }
            });
        }
        finally
        {
            _ticks += Stopwatch.GetTimestamp() - start;
        }
    }

    /// <inheritdoc />
    public void BeginGeneration(SamplingRequest request, IReadOnlyList<double> timesteps) => Time(() => inner.BeginGeneration(request, timesteps));

    /// <inheritdoc />
    public void BeginStep(StepInfo step) => Time(() => inner.BeginStep(step));

    /// <inheritdoc />
    public void OnModelOutput(StepInfo step, Tensor modelInput, Tensor output) => Time(() => inner.OnModelOutput(step, modelInput, output));

    /// <inheritdoc />
    public void OnPrediction(StepInfo step, Tensor prediction) => Time(() => inner.OnPrediction(step, prediction));

    /// <inheritdoc />
    public void EndStep(StepInfo step, Tensor latents) => Time(() => inner.EndStep(step, latents));

    /// <inheritdoc />
    public void EndGeneration() => Time(inner.EndGeneration);

    private void Time(Action action)
    {
        long start = Stopwatch.GetTimestamp();
        try { action(); }
        finally { _ticks += Stopwatch.GetTimestamp() - start; }
    }

    /// <summary>Disposes the measured policy.</summary>
    public void Dispose() => inner.Dispose();
}
