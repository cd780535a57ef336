using TorchSharp;

namespace DiffusionCache.Schedulers;

/// <summary>
/// diffusers 0.27.2 <c>DDIMScheduler</c>. Implemented: <see cref="Eta"/> (diffusers' <c>step(eta=...)</c>;
/// eta &gt; 0 consumes a <see cref="StepNoise"/> at every step), <c>set_alpha_to_one</c>, <c>clip_sample</c>, the
/// three prediction types and the three spacings (<c>use_clipped_model_output</c> is diffusers' default, false).
/// As in diffusers the previous timestep is <c>t - T // num_inference_steps</c> whatever the spacing, and below 0 the
/// "final" alpha is 1 with <c>set_alpha_to_one</c>, else <c>alphas_cumprod[0]</c>. Epsilon is derived from the
/// unclipped x0 (diffusers computes it before clipping).
/// </summary>
public sealed class DdimScheduler : SchedulerBase
{
    private readonly float _finalAlphaCumprod;
    private double _eta;

    /// <summary>A DDIM sampler for <paramref name="config"/>.</summary>
    /// <param name="config">A <c>DDIMScheduler</c> config.</param>
    /// <param name="eta">The initial <see cref="Eta"/>: 0 (deterministic DDIM, diffusers' default) or more.</param>
    /// <exception cref="DiffusionCacheException">A config for another class, a refused value, or a negative or
    /// non-finite <paramref name="eta"/>.</exception>
    public DdimScheduler(SchedulerConfig config, double eta = 0.0) : base(config, SchedulerConfig.Ddim)
    {
        _finalAlphaCumprod = config.SetAlphaToOne ? 1f : Alphas[0];
        Eta = eta;
    }

    /// <summary>The weight of the noise added in each step (0: deterministic DDIM, 1: DDPM-like).</summary>
    public double Eta
    {
        get => _eta;
        set => _eta = double.IsFinite(value) && value >= 0
            ? value
            : throw new DiffusionCacheException($"{Name}: eta must be a finite number >= 0, got {value}");
    }

    /// <inheritdoc />
    protected override double[] ComputeTimesteps(int n) => DescendingTimesteps(n);

    /// <inheritdoc />
    protected override torch.Tensor StepCore(torch.Tensor modelOutput, int stepIndex, torch.Tensor sample, StepNoise? noise)
    {
        long t = TimestepAt(stepIndex);
        long prevT = t - TrainSteps / NumInferenceSteps;
        float alphaProd = AlphaAt(t);
        float alphaProdPrev = prevT >= 0 ? AlphaAt(prevT) : _finalAlphaCumprod;
        float betaProd = 1f - alphaProd;

        var x0 = PredictOriginal(modelOutput, sample, alphaProd);
        var epsilon = Config.PredictionType switch
        {
            PredictionType.Epsilon => modelOutput,
            PredictionType.Sample => (sample - x0 * MathF.Sqrt(alphaProd)) / MathF.Sqrt(betaProd),
            _ => modelOutput * MathF.Sqrt(alphaProd) + sample * MathF.Sqrt(betaProd),
        };
        if (Config.ClipSample) x0 = x0.clamp(-Config.ClipSampleRange, Config.ClipSampleRange);

        // _get_variance: (beta_prev / beta_t) * (1 - alpha_t / alpha_prev); std = eta * variance ** 0.5 (float32)
        float variance = (1f - alphaProdPrev) / betaProd * (1f - alphaProd / alphaProdPrev);
        float std = (float)_eta * MathF.Sqrt(variance);
        var direction = epsilon * MathF.Sqrt(1f - alphaProdPrev - std * std);
        var prev = x0 * MathF.Sqrt(alphaProdPrev) + direction;
        if (!(_eta > 0)) return prev;

        if (noise is null)
            throw new DiffusionCacheException($"{Name}: eta = {_eta} adds noise at every step; pass a StepNoise " +
                "(a noise tensor or a seeded generator)");
        return prev + noise.Draw(modelOutput, Name) * std;
    }
}
