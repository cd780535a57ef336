using TorchSharp;

namespace DiffusionCache.Schedulers;

/// <summary>
/// diffusers 0.27.2 <c>EulerDiscreteScheduler</c> (Algorithm 2 of Karras et al. 2022, arXiv 2206.00364) with the
/// default <c>s_churn = 0</c>: a deterministic Euler step on the sigma table; diffusers draws a random tensor in every
/// step but with <c>s_churn = 0</c> never uses it, so this port draws nothing and ignores <see cref="StepNoise"/>.
/// <para>
/// Its timesteps are float32 values, fractional with <c>linspace</c> spacing (e.g. 946.42108 for 20 steps); the
/// sigmas are <c>np.interp</c> of the float32 training sigmas at those timesteps in float64, cast to float32, plus a
/// final 0. The model input is scaled by <c>1 / sqrt(sigma^2 + 1)</c> (<see cref="IScheduler.ScaleModelInput"/>),
/// and <see cref="InitNoiseSigma"/> is <c>max(sigmas)</c> for <c>linspace</c>/<c>trailing</c> but
/// <c>sqrt(max(sigmas)^2 + 1)</c> for <c>leading</c> (diffusers' rule). Karras sigmas (<c>use_karras_sigmas</c>,
/// with <c>sigma_min</c>/<c>sigma_max</c>) are implemented; <c>interpolation_type</c> <c>log_linear</c> and
/// <c>timestep_type</c> <c>continuous</c> with <c>v_prediction</c> are refused.
/// </para>
/// </summary>
public sealed class EulerDiscreteScheduler : SchedulerBase, ISigmaScheduler
{
    private float[] _sigmas = [];

    /// <summary>An Euler sampler for <paramref name="config"/>.</summary>
    /// <param name="config">An <c>EulerDiscreteScheduler</c> config.</param>
    /// <exception cref="DiffusionCacheException">A config for another class, or a refused value
    /// (<c>interpolation_type</c> other than linear, <c>timestep_type</c> continuous with v_prediction).</exception>
    public EulerDiscreteScheduler(SchedulerConfig config) : base(config, SchedulerConfig.EulerDiscrete)
    {
        if (config.InterpolationType != "linear")
            throw Unsupported("interpolation_type", config.InterpolationType, "linear");
        if (config.TimestepType is not ("discrete" or "continuous"))
            throw Unsupported("timestep_type", config.TimestepType, "discrete");
        if (config.TimestepType == "continuous" && config.PredictionType == PredictionType.VPrediction)
            throw Unsupported("timestep_type", config.TimestepType, "discrete (continuous timesteps with v_prediction are not implemented)");
        // Before set_timesteps diffusers' sigmas are the flipped training sigmas plus 0.
        var train = NoiseSchedule.TrainingSigmas(Alphas);
        _sigmas = [.. train.Reverse(), 0f];
    }

    /// <inheritdoc />
    public IReadOnlyList<float> Sigmas => _sigmas;

    /// <summary><c>max(sigmas)</c> with <c>linspace</c>/<c>trailing</c> spacing, <c>sqrt(max(sigmas)^2 + 1)</c> with
    /// <c>leading</c>: well above 1 (Stable Diffusion with linspace: about 14.6), so the initial noise must be
    /// scaled by it. Before <see cref="IScheduler.SetTimesteps"/> it comes from the training sigmas.</summary>
    public override float InitNoiseSigma
    {
        get
        {
            float max = _sigmas.Max();
            return Config.TimestepSpacing is TimestepSpacing.Linspace or TimestepSpacing.Trailing
                ? max
                : MathF.Sqrt(max * max + 1f);
        }
    }

    /// <inheritdoc />
    protected override double[] ComputeTimesteps(int n)
    {
        int t = TrainSteps;
        float[] timesteps = Config.TimestepSpacing switch
        {
            // np.linspace(0, T - 1, n, dtype=np.float32)[::-1]: computed in float64, then cast
            TimestepSpacing.Linspace => [.. Numpy.Linspace(0, t - 1, n).Reverse().Select(v => (float)v)],
            TimestepSpacing.Leading => [.. Enumerable.Range(0, n).Reverse().Select(i => (float)((long)i * (t / n)) + Config.StepsOffset)],
            _ => [.. Numpy.Arange(t, 0, -((double)t / n)).Select(v => (float)Numpy.Round(v) - 1f)],
        };
        float[] trainSigmas = NoiseSchedule.TrainingSigmas(Alphas);
        double[] sigmas = [.. timesteps.Select(ts => Numpy.InterpAtIndex(ts, trainSigmas))];
        if (Config.UseKarrasSigmas)
        {
            // _convert_to_karras(in_sigmas=sigmas): the interpolated float64 sigmas (descending)
            sigmas = Numpy.KarrasSigmas(Config.SigmaMin ?? sigmas[^1], Config.SigmaMax ?? sigmas[0], n);
            var logSigmas = Numpy.Log(trainSigmas);
            timesteps = [.. sigmas.Select(s => (float)Numpy.SigmaToT(s, logSigmas))];
        }
        _sigmas = [.. sigmas.Select(s => (float)s), 0f];
        return [.. timesteps.Select(v => (double)v)];
    }

    /// <summary><c>sample / sqrt(sigma^2 + 1)</c> at the step's sigma (diffusers' <c>scale_model_input</c>).</summary>
    /// <param name="sample">The current sample.</param>
    /// <param name="stepIndex">The loop index of the step.</param>
    protected override torch.Tensor ScaleCore(torch.Tensor sample, int stepIndex)
    {
        float sigma = _sigmas[stepIndex];
        return sample / MathF.Sqrt(sigma * sigma + 1f);
    }

    /// <inheritdoc />
    protected override torch.Tensor StepCore(torch.Tensor modelOutput, int stepIndex, torch.Tensor sample, StepNoise? noise)
    {
        float sigma = _sigmas[stepIndex];
        float sigmaHat = sigma * (0f + 1f);   // gamma = 0 with s_churn = 0
        var x0 = Config.PredictionType switch
        {
            PredictionType.Sample => modelOutput,
            PredictionType.Epsilon => sample - modelOutput * sigmaHat,
            _ => modelOutput * (-sigma / MathF.Sqrt(sigma * sigma + 1f)) + sample / (sigma * sigma + 1f),
        };
        var derivative = (sample - x0) / sigmaHat;
        float dt = _sigmas[stepIndex + 1] - sigmaHat;
        return sample + derivative * dt;
    }
}
