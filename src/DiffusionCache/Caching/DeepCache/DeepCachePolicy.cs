using DiffusionCache.Caching.Forecasting;
using DiffusionCache.Models.Seam;
using DiffusionCache.Models.UNets;
using DiffusionCache.Pipelines;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Caching.DeepCache;

/// <summary>
/// DeepCache (Ma et al., CVPR 2024) as a cache policy: on a full step the whole U-Net runs and the outputs of the
/// branch's reused sites are stored; on a partial step those sites answer from the cache and only the shallow part
/// (down and up layers above the branch, stem, embeddings, output) runs. What is reused is
/// <see cref="DeepCachePlan"/>; which steps are full is <see cref="DeepCacheSchedule"/> (evaluated for the
/// request's step count at the start of each generation, as DeepCache's pipeline does). It needs nothing of the
/// solver but the step index. The cache holds whole-batch tensors (the CFG batch included), starts empty with each
/// generation and is freed when the generation ends.
/// </summary>
public sealed class DeepCachePolicy : ICachePolicy
{
    private readonly Dictionary<BlockSite, Entry> _cache = [];
    private readonly List<DeepCacheStepRecord> _log = [];
    private DeepCacheStepSelection? _selection;
    private bool _inGeneration, _full, _store, _disposed;
    private int _stepCount;
    private double _timestep;
    private List<string> _reused = [], _computed = [];

    /// <summary>Which steps are full (DeepCache's <c>cache_interval</c>, <c>uniform</c>, <c>center</c>,
    /// <c>pow</c>).</summary>
    public DeepCacheSchedule Schedule { get; }
    /// <summary>What a partial step reuses, derived for the model and branch given at construction.</summary>
    public DeepCachePlan Plan { get; }
    /// <summary>DeepCache's <c>cache_branch_id</c> (see <see cref="DeepCachePlan.Branch"/>).</summary>
    public int Branch => Plan.Branch;
    /// <inheritdoc />
    public string Name { get; }
    /// <inheritdoc />
    /// <remarks>Counts are per DeepCache unit (<see cref="DeepCachePlan.Units"/>); a reused whole block counts as
    /// a reuse of each of its units.</remarks>
    public CacheStatistics Statistics { get; } = new();

    /// <summary>The full steps of the current (or last) generation; null before the first.</summary>
    public DeepCacheStepSelection? Selection => _selection;

    /// <summary>Per step of the current (or last) generation: full or partial, the units reused and the sites
    /// computed (units, stem and embeddings; not whole blocks and not the mid block's insides).</summary>
    public IReadOnlyList<DeepCacheStepRecord> Log => _log;

    /// <summary>Bytes the cache holds now.</summary>
    public long CacheBytes { get; private set; }

    /// <summary>Number of site outputs the cache holds now.</summary>
    public int CachedEntries => _cache.Count;

    /// <param name="unet">The model the policy will be attached to: the branch is checked against its levels
    /// here, before any work.</param>
    /// <param name="schedule">Which steps run the whole U-Net; evaluated for each generation's step count.</param>
    /// <param name="branch">DeepCache's <c>cache_branch_id</c> k: level b = k / 3, layer l = k % 3.</param>
    /// <param name="forecastOrder">0: partial steps reuse the last full step's features (the paper's method);
    /// 1, 2: they extrapolate them over the timesteps from the last full steps (<see cref="TaylorForecast"/>;
    /// memory × order + 1).</param>
    /// <exception cref="DiffusionCacheException">The model does not fit DeepCache or the branch does not exist in
    /// it (see <see cref="DeepCachePlan.For(DiffusionUNet, int)"/>), or the order is not 0-2.</exception>
    public DeepCachePolicy(DiffusionUNet unet, DeepCacheSchedule schedule, int branch, int forecastOrder = 0)
    {
        ArgumentNullException.ThrowIfNull(unet);
        ArgumentNullException.ThrowIfNull(schedule);
        if (forecastOrder is < 0 or > TaylorForecast.MaxOrder)
            throw new DiffusionCacheException($"DeepCache forecasting order {forecastOrder} is not supported: expected 0, 1 or 2");
        Schedule = schedule;
        Plan = DeepCachePlan.For(unet, branch);
        ForecastOrder = forecastOrder;
        Name = $"DeepCache {schedule} branch {branch}" + (forecastOrder > 0 ? $" taylor{forecastOrder}" : "");
    }

    /// <summary>0: reuse; 1, 2: forecast (see the constructor).</summary>
    public int ForecastOrder { get; }

    /// <summary>Starts a generation: frees the cache, clears <see cref="Log"/> and selects the full steps for
    /// <paramref name="request"/>'s step count (<see cref="DeepCacheSchedule.Select"/>, which may throw
    /// <see cref="DiffusionCacheException"/>).</summary>
    /// <param name="request">The generation about to run; only its step count is used.</param>
    /// <param name="timesteps">The scheduler's timesteps; their count bounds which full steps need to store.</param>
    /// <exception cref="ObjectDisposedException">The policy was disposed.</exception>
    public void BeginGeneration(SamplingRequest request, IReadOnlyList<double> timesteps)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        Free();
        _log.Clear();
        _selection = Schedule.Select(request.Steps);
        _stepCount = timesteps.Count;
        _inGeneration = true;
    }

    /// <summary>Decides whether step <paramref name="step"/> is full or partial. A full step stores its outputs
    /// only when the next step is partial; otherwise it frees the cache.</summary>
    /// <param name="step">Where the loop stands; only the index is used.</param>
    public void BeginStep(StepInfo step)
    {
        if (!_inGeneration) return;
        _full = _selection!.IsFull(step.Index);
        _timestep = step.Timestep;
        // A full step stores only what a following partial step will read; forecasting keeps every full step's
        // features, since it extrapolates from several.
        int next = step.Index + 1;
        _store = _full && (ForecastOrder > 0 || (next < _stepCount && !_selection.IsFull(next)));
        if (_full && !_store) Free();
        _reused = [];
        _computed = [];
    }

    /// <summary>Appends the step's <see cref="DeepCacheStepRecord"/> to <see cref="Log"/>.</summary>
    /// <param name="step">The step that ended.</param>
    /// <param name="latents">Unused.</param>
    public void EndStep(StepInfo step, Tensor latents)
    {
        if (_inGeneration) _log.Add(new DeepCacheStepRecord(step.Index, _full, _reused, _computed));
    }

    /// <summary>Frees the cache; until the next <see cref="BeginGeneration"/> every block call is computed.</summary>
    public void EndGeneration()
    {
        Free();
        _inGeneration = false;
    }

    /// <summary>On a partial step, answers a reused site from the cache (fresh handles, in the caller's dispose
    /// scope) without running it; otherwise runs it and, on a full step that precedes a partial one, stores a copy.
    /// Outside a generation it just runs the block.</summary>
    /// <param name="call">The block call; its site must belong to the model the plan was made for.</param>
    /// <param name="compute">Runs the block.</param>
    /// <exception cref="DiffusionCacheException">The site is unknown to the plan, or a partial step needs an output
    /// no full step stored.</exception>
    public BlockOutput Run(BlockCall call, Func<BlockOutput> compute)
    {
        ArgumentNullException.ThrowIfNull(call);
        ArgumentNullException.ThrowIfNull(compute);
        if (!_inGeneration || call.Kind == BlockKind.Model) return compute();   // outside sampling; the whole call
        var site = Plan.Find(call.Site) ?? throw new DiffusionCacheException(
            $"{Name}: call site {call.Path} is not part of the model this policy was planned for");

        if (!_full && site.ReuseOnPartial)
        {
            var entry = _cache.GetValueOrDefault(call.Site) ?? throw new DiffusionCacheException(
                $"{Name}: partial step needs {call.Path}, but no full step has stored it");
            foreach (var unit in site.Units)
            {
                if (ForecastOrder > 0) Statistics.Forecast(unit); else Statistics.Reused(unit);
                _reused.Add(unit);
            }
            return entry.Answer(_timestep);
        }

        var output = compute();
        if (_store && site.ReuseOnPartial) Store(call.Site, output);
        if (site.Role == SiteRole.Unit) Statistics.Computed(call.Path);
        if (site.Role is SiteRole.Unit or SiteRole.Outside) _computed.Add(call.Path);
        return output;
    }

    private void Store(BlockSite site, BlockOutput output)
    {
        if (!_cache.TryGetValue(site, out var entry)) _cache[site] = entry = new Entry(output, ForecastOrder);
        CacheBytes -= entry.Bytes;
        entry.Record(_timestep, output);
        CacheBytes += entry.Bytes;
        Statistics.ObserveCacheBytes(CacheBytes);
    }

    private void Free()
    {
        foreach (var entry in _cache.Values) entry.Dispose();
        _cache.Clear();
        CacheBytes = 0;
    }

    /// <summary>Frees the cache's tensors. Idempotent; a disposed policy refuses new generations.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        Free();
        _inGeneration = false;
        _disposed = true;
    }

    /// <summary>What a full step stored for one site: its hidden state and its skip tensors (a skip that is the
    /// hidden state itself is stored once), each as a forecasting history (order 0: the last value).</summary>
    private sealed class Entry : IDisposable
    {
        private readonly TaylorForecast _hidden;
        private readonly TaylorForecast?[] _skips;   // null: this skip is the hidden state

        public Entry(BlockOutput output, int order)
        {
            _hidden = new TaylorForecast(order);
            _skips = [.. output.Skips.Select(s => ReferenceEquals(s, output.Hidden) ? null : new TaylorForecast(order))];
        }

        public long Bytes => _hidden.Bytes + _skips.Sum(s => s?.Bytes ?? 0);

        public void Record(double timestep, BlockOutput output)
        {
            if (output.Skips.Count != _skips.Length)
                throw new DiffusionCacheException($"DeepCache: a block returned {output.Skips.Count} skips, earlier {_skips.Length}");
            _hidden.Record(timestep, output.Hidden);
            for (int i = 0; i < _skips.Length; i++) _skips[i]?.Record(timestep, output.Skips[i]);
        }

        /// <summary>The stored (or, order ≥ 1, extrapolated) output at <paramref name="timestep"/>, in the caller's
        /// dispose scope.</summary>
        public BlockOutput Answer(double timestep)
        {
            var hidden = _hidden.Predict(timestep);
            return new BlockOutput(hidden, [.. _skips.Select(s => s is null ? hidden : s.Predict(timestep))]);
        }

        public void Dispose()
        {
            _hidden.Dispose();
            foreach (var s in _skips) s?.Dispose();
        }
    }
}

/// <summary>One step of a DeepCache generation: whether it was full, which units were answered from the cache and
/// which sites were computed.</summary>
/// <param name="Step">The step index in the sampling loop (0-based).</param>
/// <param name="Full">Whether the whole U-Net ran at this step.</param>
/// <param name="Reused">Paths of the units answered from the cache, in call order (empty on a full step).</param>
/// <param name="Computed">Paths of the sites computed: units, stem and embeddings (not whole blocks, not the mid
/// block's insides).</param>
public sealed record DeepCacheStepRecord(int Step, bool Full, IReadOnlyList<string> Reused, IReadOnlyList<string> Computed);
