using System.Globalization;
using DiffusionCache.Caching.BlockCaching;
using DiffusionCache.Caching.Forecasting;
using DiffusionCache.Models.Seam;
using DiffusionCache.Models.UNets;
using DiffusionCache.Pipelines;
using static TorchSharp.torch;

namespace DiffusionCache.Caching.Adaptive;

/// <summary>The knobs of <see cref="OnlineBlockCachePolicy"/>.</summary>
/// <param name="Threshold">A block recomputes once the relative L1 change of its input since it last computed
/// reaches this (&gt; 0); the online counterpart of Block Caching's δ.</param>
/// <param name="Warmup">The first denoiser calls, which always compute (≥ 1: the first call must fill the cache).</param>
/// <param name="Targets">Which blocks are cached: the same targets as Block Caching.</param>
/// <param name="ForecastOrder">0: reuse the block's last change C; 1, 2: extrapolate C over the timesteps.</param>
public sealed record OnlineBlockCacheOptions(double Threshold, int Warmup = 1, BlockCachingTargets? Targets = null, int ForecastOrder = 0)
{
    /// <summary>The targets, Block Caching's default (transformer blocks) when none are given.</summary>
    public BlockCachingTargets EffectiveTargets => Targets ?? BlockCachingTargets.Transformers;

    /// <summary>Checks every knob; the message names the bad value.</summary>
    public void Validate()
    {
        if (!(Threshold > 0) || double.IsInfinity(Threshold))
            throw new DiffusionCacheException($"blockcache-online threshold must be a finite number > 0, got {Threshold.ToString(CultureInfo.InvariantCulture)}");
        if (Warmup < 1) throw new DiffusionCacheException($"blockcache-online warm-up must be at least 1 call (the first fills the cache), got {Warmup}");
        if (ForecastOrder is < 0 or > TaylorForecast.MaxOrder)
            throw new DiffusionCacheException($"blockcache-online forecasting order {ForecastOrder} is not supported: expected 0, 1 or 2");
    }
}

/// <summary>
/// Block Caching without a profile (DBCache-style, on a U-Net): every target block decides at run time. Its input is
/// always available — the blocks before it have run or answered — so each call compares the block's input with the
/// input it last computed on, L1_rel as in eq. 6; at or above the threshold (or during warm-up, or with an empty
/// cache) the block computes and stores its change C = output − pass-through(input) (Block Caching eq. 4), else it
/// answers C + pass-through(input) with the stored (or forecast) C. A block whose input barely moved is assumed to
/// produce a barely moved change, which is what the profile of eq. 6 measures offline. Decisions are recorded per
/// block and call, so what the policy did can be drawn as a lifetime plot (Fig. 4) and set against a profiled schedule
/// (<see cref="DecisionsAsSchedule"/>).
/// </summary>
public sealed class OnlineBlockCachePolicy : ICachePolicy
{
    private readonly Dictionary<string, int> _index;
    private readonly string[] _blocks;
    private readonly TaylorForecast[] _changes;
    private readonly Tensor?[] _inputs;
    private readonly double[] _inputMeanAbsolute;   // of _inputs[i], computed once when stored: reusing calls compare against it
    private readonly List<int>[] _computeSteps;
    private readonly string _model;
    private int _call = -1, _calls;
    private double _timestep;

    /// <param name="unet">The model the policy will be attached to (its target blocks are found here).</param>
    /// <param name="options">The knobs (validated here).</param>
    public OnlineBlockCachePolicy(DiffusionUNet unet, OnlineBlockCacheOptions options)
    {
        ArgumentNullException.ThrowIfNull(unet);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        Options = options;
        _blocks = [.. options.EffectiveTargets.Paths(unet)];
        _index = _blocks.Select((path, i) => (path, i)).ToDictionary(p => p.path, p => p.i, StringComparer.Ordinal);
        _changes = [.. _blocks.Select(_ => new TaylorForecast(options.ForecastOrder))];
        _inputs = new Tensor?[_blocks.Length];
        _inputMeanAbsolute = new double[_blocks.Length];
        _computeSteps = [.. _blocks.Select(_ => new List<int>())];
        _model = unet.ClassName;
    }

    /// <summary>The knobs this policy runs with.</summary>
    public OnlineBlockCacheOptions Options { get; }

    /// <inheritdoc />
    public string Name => $"BlockCache online {Options.EffectiveTargets} thr={Options.Threshold.ToString("G4", CultureInfo.InvariantCulture)}" +
        (Options.ForecastOrder > 0 ? $" taylor{Options.ForecastOrder}" : "");

    /// <inheritdoc />
    public CacheStatistics Statistics { get; } = new();

    /// <summary>Bytes held: the stored changes (× forecasting history) and the inputs they were computed on.</summary>
    public long CacheBytes => _changes.Sum(c => c.Bytes) + _inputs.Sum(t => t is null ? 0 : t.numel() * t.ElementSize);

    /// <inheritdoc />
    public void BeginGeneration(SamplingRequest request, IReadOnlyList<double> timesteps)
    {
        Free();
        foreach (var steps in _computeSteps) steps.Clear();
        _calls = timesteps.Count;
        _call = -1;
    }

    /// <inheritdoc />
    public void BeginStep(StepInfo step)
    {
        _call = step.Index;
        _timestep = step.Timestep;
    }

    /// <inheritdoc />
    public BlockOutput Run(BlockCall call, Func<BlockOutput> compute)
    {
        ArgumentNullException.ThrowIfNull(call);
        ArgumentNullException.ThrowIfNull(compute);
        if (_call < 0 || !_index.TryGetValue(call.Path, out int i)) return compute();
        var pass = call.PassThrough ?? throw new DiffusionCacheException($"{call.Path} has no residual pass-through: blockcache-online cannot cache it");
        bool mustCompute = _call < Options.Warmup || _changes[i].IsEmpty || _inputs[i] is null
            || ChangeMetric.RelativeL1(call.Input, _inputs[i]!, _inputMeanAbsolute[i]) >= Options.Threshold;
        if (mustCompute)
        {
            var output = compute();
            using (var scope = NewDisposeScope())
            {
                using var through = pass(call.Input);
                _changes[i].Keep(_timestep, (output.Hidden - through).detach());
            }
            _inputs[i]?.Dispose();
            _inputs[i] = call.Input.detach().clone();
            _inputs[i]!.DetachFromDisposeScope();
            _inputMeanAbsolute[i] = ChangeMetric.MeanAbsolute(_inputs[i]!);
            _computeSteps[i].Add(_call);
            Statistics.Computed(call.Path);
            Statistics.ObserveCacheBytes(CacheBytes);
            return output;
        }
        if (Options.ForecastOrder > 0) Statistics.Forecast(call.Path); else Statistics.Reused(call.Path);
        using var change = _changes[i].Predict(_timestep);
        using var current = pass(call.Input);
        return change + current;
    }

    /// <summary>What the policy did in the last (or current) generation as a Block Caching schedule: per block, the
    /// calls at which it computed. Same shape as a profiled schedule, so the lifetime plot (Fig. 4) and the
    /// comparisons work on it unchanged.</summary>
    /// <param name="solver">The solver's diffusers class name, recorded in the schedule.</param>
    /// <param name="numInferenceSteps">The generation's step count.</param>
    public CacheSchedule DecisionsAsSchedule(string solver, int numInferenceSteps) => new()
    {
        Model = _model,
        Solver = solver,
        NumInferenceSteps = numInferenceSteps,
        Steps = _calls,
        Targets = Options.EffectiveTargets,
        Delta = Options.Threshold,
        Blocks = _blocks,
        ComputeSteps = [.. _computeSteps.Select(s => (IReadOnlyList<int>)[.. s])],
    };

    /// <inheritdoc />
    public void EndGeneration()
    {
        _call = -1;
        Free();
    }

    private void Free()
    {
        foreach (var c in _changes) c.Clear();
        for (int i = 0; i < _inputs.Length; i++)
        {
            _inputs[i]?.Dispose();
            _inputs[i] = null;
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        Free();
        foreach (var c in _changes) c.Dispose();
    }
}
