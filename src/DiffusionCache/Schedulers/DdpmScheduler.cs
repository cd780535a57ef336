using TorchSharp;

namespace DiffusionCache.Schedulers;

/// <summary>
/// diffusers 0.27.2 <c>DDPMScheduler</c> (ancestral sampling). Implemented: <c>variance_type</c>
/// <c>fixed_small</c> (also null, which diffusers treats the same way) and <c>fixed_large</c>, <c>clip_sample</c>, the three prediction types and the three spacings.
/// Like diffusers, the previous timestep is always <c>t - T // num_inference_steps</c> (even for <c>trailing</c> and
/// <c>linspace</c>, whose timesteps are not spaced that way), with <c>alphas_cumprod</c> taken as 1 below 0. Every
/// step with <c>t &gt; 0</c> adds <c>sqrt(variance) * noise</c> — also the last one when <c>steps_offset</c> is 1, where
/// the variance is clamped to 1e-20 — so such steps need a <see cref="StepNoise"/>; the step at <c>t = 0</c> draws
/// nothing.
/// </summary>
public sealed class DdpmScheduler : SchedulerBase
{
    private readonly bool _fixedLarge;

    /// <summary>A DDPM sampler for <paramref name="config"/>.</summary>
    /// <param name="config">A <c>DDPMScheduler</c> config.</param>
    /// <exception cref="DiffusionCacheException">A config for another class, or a refused value (a
    /// <c>variance_type</c> other than <c>fixed_small</c>, <c>fixed_large</c> or null).</exception>
    public DdpmScheduler(SchedulerConfig config) : base(config, SchedulerConfig.Ddpm)
    {
        _fixedLarge = config.VarianceType switch
        {
            // null falls through every branch of diffusers' _get_variance and so behaves as fixed_small
            "fixed_small" or null => false,
            "fixed_large" => true,
            var v => throw Unsupported("variance_type", v, "fixed_small, fixed_large"),
        };
    }

    /// <inheritdoc />
    protected override double[] ComputeTimesteps(int n) => DescendingTimesteps(n);

    /// <inheritdoc />
    protected override torch.Tensor StepCore(torch.Tensor modelOutput, int stepIndex, torch.Tensor sample, StepNoise? noise)
    {
        long t = TimestepAt(stepIndex);
        long prevT = t - TrainSteps / NumInferenceSteps;
        float alphaProd = AlphaAt(t);
        float alphaProdPrev = prevT >= 0 ? AlphaAt(prevT) : 1f;
        float betaProd = 1f - alphaProd;
        float betaProdPrev = 1f - alphaProdPrev;
        float currentAlpha = alphaProd / alphaProdPrev;
        float currentBeta = 1f - currentAlpha;

        var x0 = PredictOriginal(modelOutput, sample, alphaProd);
        if (Config.ClipSample) x0 = x0.clamp(-Config.ClipSampleRange, Config.ClipSampleRange);

        float x0Coeff = MathF.Sqrt(alphaProdPrev) * currentBeta / betaProd;
        float sampleCoeff = MathF.Sqrt(currentAlpha) * betaProdPrev / betaProd;
        var prev = x0 * x0Coeff + sample * sampleCoeff;
        if (t <= 0) return prev;

        if (noise is null)
            throw new DiffusionCacheException($"{Name}: step {stepIndex} (t = {t}) adds noise; pass a StepNoise " +
                "(a noise tensor or a seeded generator)");
        float variance = _fixedLarge
            ? currentBeta
            // (1 - a_prev) / (1 - a_t) * beta_t, clamped at 1e-20 (float32) as diffusers' _get_variance does
            : MathF.Max(betaProdPrev / betaProd * currentBeta, (float)1e-20);
        return prev + noise.Draw(modelOutput, Name) * MathF.Sqrt(variance);
    }
}
