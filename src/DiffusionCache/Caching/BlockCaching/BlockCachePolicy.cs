using System.Globalization;
using DiffusionCache.Caching.Forecasting;
using DiffusionCache.Models.Seam;
using DiffusionCache.Models.UNets;
using DiffusionCache.Pipelines;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Caching.BlockCaching;

/// <summary>What a block cache stores and answers with.</summary>
public enum BlockCacheMode
{
    /// <summary>The paper's: store the change C = out - PassThrough(in); on reuse answer C + PassThrough(current
    /// input), so the residual path carries the current information through.</summary>
    Residual,
    /// <summary>Store the block's output and answer with it unchanged (for comparison).</summary>
    Output,
}

/// <summary>
/// Block Caching (Sec. 3.3) during sampling. At step k a scheduled block that computes at k runs normally, its
/// output passes on unchanged, and its cache is overwritten (with C or the output, by <see cref="Mode"/>); at any
/// other step it does not run and answers from the cache, which is left as is. Caches hold the whole batch of the
/// U-Net call (both classifier-free-guidance halves), start empty at every generation and are freed when it ends.
/// Blocks the schedule does not list, and every other module, always run. With a
/// <see cref="ScaleShiftAdjustment"/> (Sec. 3.4) a reused value is scaled and shifted per channel for the current
/// timestep before it is answered. Use through <see cref="CachedSampling.Sample"/>.
/// </summary>
public sealed class BlockCachePolicy : ICachePolicy
{
    private readonly Dictionary<string, int> _index;
    private readonly TaylorForecast[] _cache;
    private int _step = -1;
    private double _timestep;
    private IReadOnlyList<double> _timesteps = [];
    private ScaleShiftTable? _table;

    /// <summary>Validates <paramref name="schedule"/> against the model and solver (see
    /// <see cref="CacheSchedule.Validate"/>); the step count is checked when a generation begins.</summary>
    /// <param name="unet">The model the policy will be attached to; the schedule's block paths must be its
    /// sites.</param>
    /// <param name="schedule">When each cached block computes.</param>
    /// <param name="solver">The scheduler class sampling will use (e.g. <c>DDIMScheduler</c>); must be the
    /// schedule's.</param>
    /// <param name="mode">What the caches store and answer with.</param>
    /// <param name="adjustment">Scale-shift adjustment (Sec. 3.4) for reused values, or null for plain caching;
    /// validated against <paramref name="schedule"/>.</param>
    /// <param name="forecastOrder">0: reuse the stored value (the paper's method); 1, 2: extrapolate it over the
    /// timesteps from the block's last computed values (<see cref="TaylorForecast"/>; memory × order + 1).</param>
    /// <exception cref="DiffusionCacheException">The schedule or adjustment does not fit the model or solver.
    /// </exception>
    public BlockCachePolicy(DiffusionUNet unet, CacheSchedule schedule, string solver, BlockCacheMode mode = BlockCacheMode.Residual,
        ScaleShiftAdjustment? adjustment = null, int forecastOrder = 0)
    {
        ArgumentNullException.ThrowIfNull(schedule);
        schedule.Validate(unet, solver, schedule.NumInferenceSteps);
        adjustment?.Validate(schedule);
        Schedule = schedule;
        Mode = mode;
        Adjustment = adjustment;
        _index = schedule.Blocks.Select((path, i) => (path, i)).ToDictionary(p => p.path, p => p.i, StringComparer.Ordinal);
        _cache = [.. schedule.Blocks.Select(_ => new TaylorForecast(forecastOrder))];
        ForecastOrder = forecastOrder;
    }

    /// <summary>When each cached block computes; blocks it does not list always run.</summary>
    public CacheSchedule Schedule { get; }
    /// <summary>Whether the caches hold the change C (the paper's) or the plain output.</summary>
    public BlockCacheMode Mode { get; }
    /// <summary>The scale-shift adjustment applied to reused values; null for plain caching.</summary>
    public ScaleShiftAdjustment? Adjustment { get; }
    /// <summary>0: reuse; 1, 2: forecast (see the constructor).</summary>
    public int ForecastOrder { get; }
    /// <inheritdoc />
    /// <remarks>Counts are per scheduled block path; other blocks are not tracked.</remarks>
    public CacheStatistics Statistics { get; } = new();

    /// <inheritdoc />
    /// <remarks>E.g. "BlockCache transformer2d δ=0.1 residual + scale-shift".</remarks>
    public string Name => $"BlockCache {Schedule.Targets}" +
        (Schedule.Delta is double d ? $" δ={d.ToString("G4", CultureInfo.InvariantCulture)}" : "") +
        $" {Mode.ToString().ToLowerInvariant()}" + (Adjustment is null ? "" : " + scale-shift") +
        (ForecastOrder > 0 ? $" taylor{ForecastOrder}" : "");

    /// <summary>Scale-shift distillation with an unroll window (<see cref="Training.ScaleShiftDistillationOptions.Unroll"/>
    /// &gt; 1): stored values keep their autograd graph, so a later step's loss reaches the adjustment's effect on the
    /// step that computed them; <see cref="DetachCaches"/> cuts it at the window's end. Off (the default), stored
    /// values are constants.</summary>
    internal bool KeepGraph { get; set; }

    /// <summary>Cuts the stored values off the autograd graph (values unchanged); see <see cref="KeepGraph"/>.</summary>
    internal void DetachCaches()
    {
        foreach (var history in _cache) history.DetachValues();
    }

    /// <summary>Bytes the caches hold now.</summary>
    public long CacheBytes => _cache.Sum(t => t.Bytes);

    /// <summary>Starts a generation with empty caches.</summary>
    /// <param name="request">The generation about to run; its step count must be the schedule's
    /// <see cref="CacheSchedule.NumInferenceSteps"/>.</param>
    /// <param name="timesteps">The solver's timesteps, one per U-Net call; there must be
    /// <see cref="CacheSchedule.Steps"/> of them. Scale-shift adjustments are tabulated for them.</param>
    /// <exception cref="DiffusionCacheException">The step count or number of U-Net calls differs from the
    /// schedule's.</exception>
    public void BeginGeneration(SamplingRequest request, IReadOnlyList<double> timesteps)
    {
        if (request.Steps != Schedule.NumInferenceSteps)
            throw new DiffusionCacheException($"schedule is for {Schedule.NumInferenceSteps} steps, sampling runs {request.Steps}");
        if (timesteps.Count != Schedule.Steps)
            throw new DiffusionCacheException($"schedule covers {Schedule.Steps} U-Net calls, the solver makes {timesteps.Count}");
        Free();
        _step = -1;
        _timesteps = timesteps;
    }

    /// <summary>Records the step index (the schedule's column) and timestep (for the scale-shift adjustment).
    /// </summary>
    /// <param name="step">Where the loop stands.</param>
    public void BeginStep(StepInfo step)
    {
        _step = step.Index;
        _timestep = step.Timestep;
    }

    /// <summary>For a scheduled block: at a compute step runs it and overwrites its cache; at any other step answers
    /// without running it, with the cached value (scale-shift adjusted if configured) plus, in
    /// <see cref="BlockCacheMode.Residual"/> mode, the pass-through of the current input. The answer is a new tensor
    /// in the caller's dispose scope. Unscheduled blocks, and calls outside a generation, just run.</summary>
    /// <param name="call">The block call; in residual mode a scheduled block must have a pass-through.</param>
    /// <param name="compute">Runs the block.</param>
    /// <exception cref="DiffusionCacheException">A scheduled block has no pass-through in residual mode, its cache
    /// is empty at a reuse step, or the cached change does not match the current pass-through's shape.</exception>
    public BlockOutput Run(BlockCall call, Func<BlockOutput> compute)
    {
        if (_step < 0 || !_index.TryGetValue(call.Path, out int i)) return compute();
        if (Mode == BlockCacheMode.Residual && call.PassThrough is null)
            throw new DiffusionCacheException($"{call.Path} has no residual pass-through: it cannot be cached in residual mode");
        if (Schedule.Computes(i, _step))
        {
            var output = compute();
            Store(i, call, output.Hidden);
            Statistics.Computed(call.Path);
            return output;
        }
        if (_cache[i].IsEmpty) throw new DiffusionCacheException(
            $"{call.Path}: cannot reuse at step {_step}, its cache is empty (the block has not computed in this " +
            "generation; step 0 must compute)");
        if (ForecastOrder > 0) Statistics.Forecast(call.Path); else Statistics.Reused(call.Path);
        using var cached = _cache[i].Predict(_timestep);
        var answer = Adjustment is null ? cached.alias() : Adjusted(call.Path, cached);
        if (Mode == BlockCacheMode.Output) return answer;
        using (answer)
        {
            using var pass = call.PassThrough!(call.Input);
            if (!pass.shape.SequenceEqual(cached.shape))
                throw new DiffusionCacheException($"{call.Path}: cached change is [{string.Join(",", cached.shape)}], " +
                    $"the current pass-through [{string.Join(",", pass.shape)}]");
            return answer + pass;
        }
    }

    /// <summary>Sampling (no gradients) reads the adjustment from a table made once per generation; distillation
    /// (gradients on) evaluates it per call so that each step's backward pass reaches its weights.</summary>
    private Tensor Adjusted(string path, Tensor cached)
    {
        if (is_grad_enabled()) return Adjustment!.Apply(path, cached, _timestep);
        _table ??= Adjustment!.Tabulate(_timesteps);
        return _table.Apply(path, _step, cached);
    }

    private void Store(int i, BlockCall call, Tensor output)
    {
        Tensor fresh;
        using (var scope = NewDisposeScope())
        {
            // Detached: under a distillation's gradient tape the cache must not hold this step's graph, unless the
            // distillation unrolls (KeepGraph) and detaches at its window's end itself.
            if (Mode == BlockCacheMode.Output) fresh = KeepGraph ? output.clone() : output.detach().clone();
            else
            {
                using var pass = call.PassThrough!(call.Input);
                fresh = KeepGraph ? output - pass : (output - pass).detach();
            }
            _cache[i].Keep(_timestep, fresh);   // a fresh tensor: handed over, not copied again
        }
        Statistics.ObserveCacheBytes(CacheBytes);
    }

    /// <summary>Frees the caches and the scale-shift table; until the next generation every block runs.</summary>
    public void EndGeneration()
    {
        _step = -1;
        Free();
    }

    private void Free()
    {
        _table?.Dispose();
        _table = null;
        foreach (var history in _cache) history.Clear();
    }

    /// <summary>Frees the caches' tensors. The policy stays usable: a later generation starts with empty caches.
    /// </summary>
    public void Dispose() => Free();
}
