using System.Globalization;
using DiffusionCache.Caching.Forecasting;
using DiffusionCache.Models.Seam;
using DiffusionCache.Models.UNets;
using DiffusionCache.Pipelines;
using static TorchSharp.torch;

namespace DiffusionCache.Caching.Adaptive;

/// <summary>What a <see cref="StepCachePolicy"/> watches to decide whether a step may reuse.</summary>
public enum StepProbe
{
    /// <summary>The model input (the scaled latents, both CFG halves): free to observe (stable-diffusion.cpp's
    /// ucache watches its input too).</summary>
    Input,
    /// <summary>The output of <c>down_blocks.0</c> (First-Block-Cache's probe): costs the stem and the first down
    /// block on every step, and sees how the network itself reacts to the input.</summary>
    FirstBlock,
}

/// <summary>The knobs of <see cref="StepCachePolicy"/>, named as stable-diffusion.cpp's ucache names them.</summary>
/// <param name="Threshold">Reuse while the accumulated change stays below this (&gt; 0).</param>
/// <param name="Start">First fraction of the steps where reuse may happen (0 ≤ start &lt; end); earlier steps,
/// where the image is still being laid out, always compute.</param>
/// <param name="End">Fraction of the steps after which every step computes again (≤ 1).</param>
/// <param name="Decay">Each step the accumulated change is multiplied by this before the new change is added
/// (0 &lt; decay ≤ 1; 1 = plain sum).</param>
/// <param name="Relative">Change relative to the probe's mean magnitude (true) or absolute mean L1 (false).</param>
/// <param name="Reset">Reset the accumulated change when a step computes (true), or keep it (a step that had to
/// compute makes the following ones compute too: more conservative).</param>
/// <param name="Probe">What is watched.</param>
/// <param name="ForecastOrder">0: reuse the last residual; 1, 2: extrapolate it over the timesteps
/// (<see cref="TaylorForecast"/>).</param>
public sealed record StepCacheOptions(double Threshold, double Start = 0.15, double End = 0.95, double Decay = 1.0,
    bool Relative = true, bool Reset = true, StepProbe Probe = StepProbe.Input, int ForecastOrder = 0)
{
    /// <summary>Checks every knob; the message names the bad value.</summary>
    public void Validate()
    {
        if (!(Threshold > 0) || double.IsInfinity(Threshold)) throw new DiffusionCacheException($"ucache threshold must be a finite number > 0, got {Threshold.ToString(CultureInfo.InvariantCulture)}");
        if (!(Start >= 0) || !(End <= 1) || !(Start < End))
            throw new DiffusionCacheException($"ucache start/end must satisfy 0 <= start < end <= 1, got start {Start.ToString(CultureInfo.InvariantCulture)}, end {End.ToString(CultureInfo.InvariantCulture)}");
        if (!(Decay > 0) || !(Decay <= 1)) throw new DiffusionCacheException($"ucache decay must be in (0, 1], got {Decay.ToString(CultureInfo.InvariantCulture)}");
        if (ForecastOrder is < 0 or > TaylorForecast.MaxOrder) throw new DiffusionCacheException($"ucache forecasting order {ForecastOrder} is not supported: expected 0, 1 or 2");
    }
}

/// <summary>
/// Step-level adaptive caching on a U-Net (the ucache / First-Block-Cache family): no profile, no schedule. Each
/// denoiser call observes a probe (<see cref="StepProbe"/>) and adds its change since the previous call to an
/// accumulator; inside the active window, while the accumulator is below the threshold, the call is answered
/// without running the rest of the network, else it computes and (with reset) the accumulator restarts.
/// <para>What is reused: the model's residual r = prediction − sample from the last computed call, answered as
/// sample + r (or r extrapolated over the timesteps, <see cref="StepCacheOptions.ForecastOrder"/>). It is
/// shape-correct on every U-Net whose prediction has the sample's shape (in_channels = out_channels: ε-, v- and
/// x₀-prediction models; a learned-variance model is refused), and unlike reusing the prediction itself it follows
/// the part of the output that tracks the input (for ε-prediction at low noise most of the change of the input).
/// With the <see cref="StepProbe.FirstBlock"/> probe the stem and <c>down_blocks.0</c> have run when the decision
/// is made; the rest of that call is abandoned (its tensors freed with its dispose scope).</para>
/// Composes with CFG batching (one decision for the whole [uncond; cond] batch) and every solver (it sees calls,
/// not solver steps: PLMS's warm-up calls and DPM-Solver++'s history are just calls).
/// </summary>
public sealed class StepCachePolicy : ICachePolicy
{
    private readonly string _probeSite;
    private readonly TaylorForecast _residual;
    private Tensor? _previousProbe;
    private double _accumulated;
    private int _calls;
    private bool _inGeneration, _active;
    private double _timestep;
    private readonly List<bool> _decisions = [];

    /// <param name="unet">The model the policy will be attached to (checked: prediction shaped like the sample).</param>
    /// <param name="options">The knobs (validated here).</param>
    public StepCachePolicy(DiffusionUNet unet, StepCacheOptions options)
    {
        ArgumentNullException.ThrowIfNull(unet);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (unet.OutChannels != unet.InChannels)
            throw new DiffusionCacheException($"ucache reuses prediction − sample, which needs out_channels = in_channels; this {unet.ClassName} " +
                $"has in_channels {unet.InChannels} and out_channels {unet.OutChannels}");
        Options = options;
        _probeSite = options.Probe == StepProbe.FirstBlock
            ? unet.Seam.Sites.FirstOrDefault(s => s.Kind == BlockKind.DownBlock && s.Level == 0)?.Path
              ?? throw new DiffusionCacheException($"ucache probe first-block: this {unet.ClassName} has no down_blocks.0")
            : DiffusionUNet.ModelPath;
        _residual = new TaylorForecast(options.ForecastOrder);
    }

    /// <summary>The knobs this policy runs with.</summary>
    public StepCacheOptions Options { get; }

    /// <inheritdoc />
    public string Name => $"ucache thr={Options.Threshold.ToString("G4", CultureInfo.InvariantCulture)}" +
        (Options.Probe == StepProbe.FirstBlock ? " first-block" : "") +
        (Options.ForecastOrder > 0 ? $" taylor{Options.ForecastOrder}" : "");

    /// <inheritdoc />
    public CacheStatistics Statistics { get; } = new();

    /// <summary>Per denoiser call of the last (or current) generation: true where it computed.</summary>
    public IReadOnlyList<bool> Decisions => _decisions;

    /// <inheritdoc />
    public void BeginGeneration(SamplingRequest request, IReadOnlyList<double> timesteps)
    {
        Free();
        _decisions.Clear();
        _calls = timesteps.Count;
        _inGeneration = true;
    }

    /// <inheritdoc />
    public void BeginStep(StepInfo step)
    {
        if (!_inGeneration) return;
        double fraction = (double)step.Index / _calls;
        _active = fraction >= Options.Start && fraction < Options.End;
        _timestep = step.Timestep;
    }

    /// <inheritdoc />
    public BlockOutput Run(BlockCall call, Func<BlockOutput> compute)
    {
        ArgumentNullException.ThrowIfNull(call);
        ArgumentNullException.ThrowIfNull(compute);
        if (!_inGeneration) return compute();
        if (call.Kind == BlockKind.Model) return RunModel(call, compute);
        if (call.Path != _probeSite) return compute();
        var output = compute();
        if (Decide(output.Hidden)) throw new ReuseThisCall();
        return output;
    }

    private BlockOutput RunModel(BlockCall call, Func<BlockOutput> compute)
    {
        if (Options.Probe == StepProbe.Input && Decide(call.Input)) return Answer(call.Input);
        BlockOutput output;
        try
        {
            output = compute();
        }
        catch (ReuseThisCall)
        {
            return Answer(call.Input);
        }
        _residual.Keep(_timestep, (output.Hidden - call.Input).detach());
        Statistics.Computed(DiffusionUNet.ModelPath);
        Statistics.ObserveCacheBytes(CacheBytes);
        _decisions.Add(true);
        return output;
    }

    /// <summary>Observes the probe; true when this call may reuse. A computing call resets the accumulator when
    /// <see cref="StepCacheOptions.Reset"/> is set (the caller then records the new residual).</summary>
    private bool Decide(Tensor probe)
    {
        if (_previousProbe is not null)
        {
            double change = Options.Relative ? ChangeMetric.RelativeL1(probe, _previousProbe) : ChangeMetric.MeanAbsoluteDifference(probe, _previousProbe);
            _accumulated = _accumulated * Options.Decay + change;
        }
        _previousProbe?.Dispose();
        _previousProbe = probe.detach().clone();
        _previousProbe.DetachFromDisposeScope();
        bool reuse = _active && !_residual.IsEmpty && _accumulated < Options.Threshold;
        if (!reuse && Options.Reset) _accumulated = 0;
        return reuse;
    }

    private BlockOutput Answer(Tensor sample)
    {
        if (Options.ForecastOrder > 0) Statistics.Forecast(DiffusionUNet.ModelPath);
        else Statistics.Reused(DiffusionUNet.ModelPath);
        _decisions.Add(false);
        using var residual = _residual.Predict(_timestep);
        return sample + residual;
    }

    /// <summary>Bytes held: the residual history and the previous probe.</summary>
    public long CacheBytes => _residual.Bytes + (_previousProbe is null ? 0 : _previousProbe.numel() * _previousProbe.ElementSize);

    /// <inheritdoc />
    public void EndGeneration()
    {
        _inGeneration = false;
        Free();
    }

    private void Free()
    {
        _residual.Clear();
        _previousProbe?.Dispose();
        _previousProbe = null;
        _accumulated = 0;
        _active = false;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        Free();
        _residual.Dispose();
    }

    /// <summary>Unwinds the rest of a denoiser call once the first-block probe has decided to reuse.</summary>
    private sealed class ReuseThisCall : Exception;
}
