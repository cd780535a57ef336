using TorchSharp;

namespace DiffusionCache.Schedulers;

/// <summary>
/// diffusers 0.27.2 <c>DPMSolverMultistepScheduler</c> with <c>algorithm_type</c> <c>dpmsolver++</c> (DPM-Solver++,
/// arXiv 2211.01095): multistep solver of order 1, 2 (<c>solver_type</c> <c>midpoint</c> or <c>heun</c>) or 3 on the
/// data prediction x0, in float32 on the sigma table.
/// <para>
/// Surprises kept from diffusers: the timesteps are built from <c>n + 1</c> points with the last one dropped
/// (<c>leading</c>: <c>arange(n + 1) * (T // (n + 1))</c>, so 1 step gives t = 501, not 1); the sigmas come from
/// NumPy in float64 (<c>np.interp</c> of the float32 training sigmas, or the Karras ramp) and are cast to float32
/// with a final sigma of 0 (<c>final_sigmas_type</c> <c>zero</c>). Step orders: the first step is first order and the
/// order grows by one per step up to <c>solver_order</c> (<c>lower_order_nums</c>); with <c>lower_order_final</c> and
/// fewer than 15 steps the second-to-last step is at most second order; and in 0.27.2 the last step is first order
/// whenever <c>final_sigmas_type</c> is <c>zero</c> (its default), whatever <c>lower_order_final</c> says — that step
/// returns the x0 prediction itself (sigma 0).
/// </para>
/// <para>
/// diffusers finds its step index by looking the first timestep up in the list (taking the second match when that
/// value repeats) and counts from there; this port uses the loop index. The two agree unless the first timestep
/// repeats, which happens only with <c>leading</c> spacing and as many steps as training steps (every timestep is
/// then <c>steps_offset</c>), where diffusers itself fails with an IndexError at the last step.
/// </para>
/// <para>
/// Not implemented, refused when configured: the other algorithm types (<c>dpmsolver</c>, the SDE variants),
/// <c>use_lu_lambdas</c>, <c>variance_type</c> learned/learned_range. <c>deis</c> and the UniPC/DEIS solver types
/// <c>logrho</c>, <c>bh1</c>, <c>bh2</c> are mapped to <c>dpmsolver++</c>/<c>midpoint</c> as diffusers does.
/// </para>
/// </summary>
public sealed class DpmSolverMultistepScheduler : SchedulerBase, ISigmaScheduler
{
    private readonly bool _heun;
    private readonly bool _finalSigmaZero;
    private float[] _sigmas = [];
    private readonly torch.Tensor?[] _modelOutputs;
    private int _lowerOrderNums;

    /// <summary>A DPM-Solver++ multistep sampler for <paramref name="config"/>.</summary>
    /// <param name="config">A <c>DPMSolverMultistepScheduler</c> config.</param>
    /// <exception cref="DiffusionCacheException">A config for another class, or a value that is not implemented (see
    /// the class remarks), named with its key.</exception>
    public DpmSolverMultistepScheduler(SchedulerConfig config) : base(config, SchedulerConfig.DpmSolverMultistep)
    {
        if (config.AlgorithmType is not ("dpmsolver++" or "deis"))
            throw Unsupported("algorithm_type", config.AlgorithmType, "dpmsolver++ (deis maps to it, as in diffusers)");
        _heun = config.SolverType switch
        {
            "midpoint" or "logrho" or "bh1" or "bh2" => false,
            "heun" => true,
            var s => throw Unsupported("solver_type", s, "midpoint, heun"),
        };
        if (config.SolverOrder is < 1 or > 3)
            throw Unsupported("solver_order", config.SolverOrder, "1, 2, 3");
        if (config.UseLuLambdas)
            throw Unsupported("use_lu_lambdas", true, "false");
        if (config.VarianceType is not null)
            throw Unsupported("variance_type", config.VarianceType, "null");
        _finalSigmaZero = config.FinalSigmasType switch
        {
            "zero" => true,
            "sigma_min" => false,
            var s => throw Unsupported("final_sigmas_type", s, "zero, sigma_min"),
        };
        if (double.IsNaN(config.LambdaMinClipped))
            throw Unsupported("lambda_min_clipped", config.LambdaMinClipped, "a number or -Infinity");
        _modelOutputs = new torch.Tensor?[config.SolverOrder];
    }

    /// <inheritdoc />
    public IReadOnlyList<float> Sigmas => _sigmas;

    /// <inheritdoc />
    protected override double[] ComputeTimesteps(int n)
    {
        int t = TrainSteps;
        float[] ac = Alphas;
        // clipped_idx = searchsorted(flip(lambda_t), lambda_min_clipped); last_timestep = T - clipped_idx
        var lambdaFlipped = ac.Select(a => MathF.Log(MathF.Sqrt(a)) - MathF.Log(MathF.Sqrt(1f - a))).Reverse().ToArray();
        int clippedIdx = 0;
        while (clippedIdx < lambdaFlipped.Length && lambdaFlipped[clippedIdx] < Config.LambdaMinClipped) clippedIdx++;
        int lastTimestep = t - clippedIdx;

        double[] timesteps = Config.TimestepSpacing switch
        {
            TimestepSpacing.Linspace => [.. Numpy.Linspace(0, lastTimestep - 1, n + 1).Select(Numpy.Round).Reverse().Take(n)],
            TimestepSpacing.Leading => [.. Enumerable.Range(0, n + 1).Reverse().Take(n)
                .Select(i => (double)((long)i * (lastTimestep / (n + 1)) + Config.StepsOffset))],
            _ => [.. Numpy.Arange(lastTimestep, 0, -((double)t / n)).Select(v => Numpy.Round(v) - 1)],
        };

        float[] trainSigmas = NoiseSchedule.TrainingSigmas(ac);
        double[] sigmas;
        if (Config.UseKarrasSigmas)
        {
            // in_sigmas = flip(sigmas) (float32): sigma_min = in_sigmas[-1], sigma_max = in_sigmas[0]
            sigmas = Numpy.KarrasSigmas(trainSigmas[0], trainSigmas[^1], n);
            var logSigmas = Numpy.Log(trainSigmas);
            timesteps = [.. sigmas.Select(s => Numpy.Round(Numpy.SigmaToT(s, logSigmas)))];
        }
        else
        {
            sigmas = [.. timesteps.Select(ts => Numpy.InterpAtIndex(ts, trainSigmas))];
        }
        float sigmaLast = _finalSigmaZero ? 0f : MathF.Sqrt((1f - ac[0]) / ac[0]);
        _sigmas = [.. sigmas.Select(s => (float)s), sigmaLast];
        return timesteps;
    }

    /// <inheritdoc />
    protected override torch.Tensor StepCore(torch.Tensor modelOutput, int stepIndex, torch.Tensor sample, StepNoise? noise)
    {
        int count = Timesteps.Count;
        bool lowerOrderFinal = stepIndex == count - 1 &&
            (Config.EulerAtFinal || (Config.LowerOrderFinal && count < 15) || _finalSigmaZero);
        bool lowerOrderSecond = stepIndex == count - 2 && Config.LowerOrderFinal && count < 15;

        var x0 = ConvertModelOutput(modelOutput, stepIndex, sample);
        int order = Config.SolverOrder;
        _modelOutputs[0]?.Dispose();
        for (int i = 0; i < order - 1; i++) _modelOutputs[i] = _modelOutputs[i + 1];
        _modelOutputs[order - 1] = Keep(x0);

        torch.Tensor prev;
        if (order == 1 || _lowerOrderNums < 1 || lowerOrderFinal)
            prev = FirstOrder(x0, stepIndex, sample);
        else if (order == 2 || _lowerOrderNums < 2 || lowerOrderSecond)
            prev = SecondOrder(stepIndex, sample);
        else
            prev = ThirdOrder(stepIndex, sample);
        if (_lowerOrderNums < order) _lowerOrderNums++;
        return prev;
    }

    /// <summary>_sigma_to_alpha_sigma_t: alpha = 1 / sqrt(sigma^2 + 1), sigma_t = sigma * alpha (float32).</summary>
    private static (float Alpha, float Sigma) AlphaSigma(float sigma)
    {
        float alpha = 1f / MathF.Sqrt(sigma * sigma + 1f);
        return (alpha, sigma * alpha);
    }

    private static float Lambda((float Alpha, float Sigma) s) => MathF.Log(s.Alpha) - MathF.Log(s.Sigma);

    private torch.Tensor ConvertModelOutput(torch.Tensor modelOutput, int stepIndex, torch.Tensor sample)
    {
        var (alpha, sigma) = AlphaSigma(_sigmas[stepIndex]);
        return Config.PredictionType switch
        {
            PredictionType.Epsilon => (sample - modelOutput * sigma) / alpha,
            PredictionType.Sample => modelOutput,
            _ => sample * alpha - modelOutput * sigma,
        };
    }

    private torch.Tensor FirstOrder(torch.Tensor x0, int i, torch.Tensor sample)
    {
        var t = AlphaSigma(_sigmas[i + 1]);
        var s = AlphaSigma(_sigmas[i]);
        float h = Lambda(t) - Lambda(s);
        return sample * (t.Sigma / s.Sigma) - x0 * (t.Alpha * (MathF.Exp(-h) - 1f));
    }

    private torch.Tensor SecondOrder(int i, torch.Tensor sample)
    {
        var t = AlphaSigma(_sigmas[i + 1]);
        var s0 = AlphaSigma(_sigmas[i]);
        var s1 = AlphaSigma(_sigmas[i - 1]);
        float lambdaT = Lambda(t), lambdaS0 = Lambda(s0), lambdaS1 = Lambda(s1);
        var m0 = _modelOutputs[^1]!;
        var m1 = _modelOutputs[^2]!;
        float h = lambdaT - lambdaS0, h0 = lambdaS0 - lambdaS1;
        float r0 = h0 / h;
        var d0 = m0;
        var d1 = (m0 - m1) * (1f / r0);
        float expm = MathF.Exp(-h) - 1f;
        var x = sample * (t.Sigma / s0.Sigma) - d0 * (t.Alpha * expm);
        return _heun
            ? x + d1 * (t.Alpha * (expm / h + 1f))
            : x - d1 * (0.5f * (t.Alpha * expm));
    }

    private torch.Tensor ThirdOrder(int i, torch.Tensor sample)
    {
        var t = AlphaSigma(_sigmas[i + 1]);
        var s0 = AlphaSigma(_sigmas[i]);
        var s1 = AlphaSigma(_sigmas[i - 1]);
        var s2 = AlphaSigma(_sigmas[i - 2]);
        float lambdaT = Lambda(t), lambdaS0 = Lambda(s0), lambdaS1 = Lambda(s1), lambdaS2 = Lambda(s2);
        var m0 = _modelOutputs[^1]!;
        var m1 = _modelOutputs[^2]!;
        var m2 = _modelOutputs[^3]!;
        float h = lambdaT - lambdaS0, h0 = lambdaS0 - lambdaS1, h1 = lambdaS1 - lambdaS2;
        float r0 = h0 / h, r1 = h1 / h;
        var d0 = m0;
        var d10 = (m0 - m1) * (1f / r0);
        var d11 = (m1 - m2) * (1f / r1);
        var d1 = d10 + (d10 - d11) * (r0 / (r0 + r1));
        var d2 = (d10 - d11) * (1f / (r0 + r1));
        float expm = MathF.Exp(-h) - 1f;
        return sample * (t.Sigma / s0.Sigma)
            - d0 * (t.Alpha * expm)
            + d1 * (t.Alpha * (expm / h + 1f))
            - d2 * (t.Alpha * ((expm + h) / (h * h) - 0.5f));
    }

    /// <inheritdoc />
    private protected override void DetachState()
    {
        for (int i = 0; i < _modelOutputs.Length; i++) _modelOutputs[i] = Detached(_modelOutputs[i]);
    }

    /// <inheritdoc />
    protected override void ResetState()
    {
        for (int i = 0; i < _modelOutputs.Length; i++)
        {
            _modelOutputs[i]?.Dispose();
            _modelOutputs[i] = null;
        }
        _lowerOrderNums = 0;
    }
}
