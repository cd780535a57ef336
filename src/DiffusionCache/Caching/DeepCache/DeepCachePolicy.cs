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
    /// <exception cref="DiffusionCacheException">The model does not fit DeepCache or the branch does not exist in
    /// it (see <see cref="DeepCachePlan.For(DiffusionUNet, int)"/>).</exception>
    public DeepCachePolicy(DiffusionUNet unet, DeepCacheSchedule schedule, int branch)
    {
        ArgumentNullException.ThrowIfNull(unet);
        ArgumentNullException.ThrowIfNull(schedule);
        Schedule = schedule;
        Plan = DeepCachePlan.For(unet, branch);
        Name = $"DeepCache {schedule} branch {branch}";
    }

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
        // A full step stores only what a following partial step will read.
        int next = step.Index + 1;
        _store = _full && next < _stepCount && !_selection.IsFull(next);
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
                Statistics.Reused(unit);
                _reused.Add(unit);
            }
            return entry.Answer();
        }

        var output = compute();
        if (_store && site.ReuseOnPartial) Store(call.Site, output);
        if (site.Role == SiteRole.Unit) Statistics.Computed(call.Path);
        if (site.Role is SiteRole.Unit or SiteRole.Outside) _computed.Add(call.Path);
        return output;
    }

    private void Store(BlockSite site, BlockOutput output)
    {
        if (_cache.Remove(site, out var old))
        {
            CacheBytes -= old.Bytes;
            old.Dispose();
        }
        var entry = Entry.Keep(output);
        _cache[site] = entry;
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

    /// <summary>A stored block output: own copies of the hidden state and skips (a skip that is the hidden state
    /// itself shares its copy), outside every dispose scope.</summary>
    private sealed class Entry : IDisposable
    {
        private readonly Tensor _hidden;
        private readonly Tensor[] _skips;
        private readonly bool[] _skipIsHidden;

        public long Bytes { get; }

        private Entry(Tensor hidden, Tensor[] skips, bool[] skipIsHidden, long bytes)
        {
            _hidden = hidden;
            _skips = skips;
            _skipIsHidden = skipIsHidden;
            Bytes = bytes;
        }

        public static Entry Keep(BlockOutput output)
        {
            var hidden = output.Hidden.clone().DetachFromDisposeScope();
            var isHidden = output.Skips.Select(s => ReferenceEquals(s, output.Hidden)).ToArray();
            var skips = output.Skips.Select((s, i) => isHidden[i] ? hidden : s.clone().DetachFromDisposeScope()).ToArray();
            long bytes = SizeOf(hidden) + skips.Where((_, i) => !isHidden[i]).Sum(SizeOf);
            return new Entry(hidden, skips, isHidden, bytes);
        }

        /// <summary>Fresh handles (in the caller's dispose scope) on the stored values.</summary>
        public BlockOutput Answer()
        {
            var hidden = _hidden.alias();
            return new BlockOutput(hidden, [.. _skips.Select((s, i) => _skipIsHidden[i] ? hidden : s.alias())]);
        }

        private static long SizeOf(Tensor t) => t.numel() * t.element_size();

        public void Dispose()
        {
            _hidden.Dispose();
            for (int i = 0; i < _skips.Length; i++)
                if (!_skipIsHidden[i]) _skips[i].Dispose();
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
