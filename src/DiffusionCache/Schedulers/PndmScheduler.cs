using TorchSharp;

namespace DiffusionCache.Schedulers;

/// <summary>
/// diffusers 0.27.2 <c>PNDMScheduler</c> (pseudo numerical methods, arXiv 2202.09778): Runge-Kutta (PRK) warm-up then
/// linear multistep (PLMS), or PLMS alone with <c>skip_prk_steps</c> (Stable Diffusion's default). Prediction types
/// <c>epsilon</c> and <c>v_prediction</c> (diffusers raises for <c>sample</c>).
/// <para>
/// Its timesteps repeat, and the repeats are real model calls: with <c>skip_prk_steps</c> the list is
/// <c>[t0, t1, t1, t2, ...]</c> (n + 1 calls; the second call at <c>t1</c> re-evaluates the model at the predicted
/// sample and averages the two outputs, a Heun-like start). Without it, the 4 first timesteps become 12 PRK calls
/// (each RK4 stage at <c>t</c> or <c>t - T // n // 2</c>) followed by <c>n - 3</c> PLMS calls. diffusers raises a NumPy
/// broadcasting error for PRK with fewer than 4 steps; this port refuses them in <see cref="IScheduler.SetTimesteps"/>.
/// </para>
/// <para>
/// The state is the step counter, the current model-output accumulator, the saved sample and the model-output history
/// <c>ets</c>; <see cref="IScheduler.Reset"/> clears all of it.
/// </para>
/// </summary>
public sealed class PndmScheduler : SchedulerBase
{
    private const int PndmOrder = 4;
    private readonly float _finalAlphaCumprod;
    private int _prkCount;
    private int _counter;
    private torch.Tensor? _curModelOutput;
    private torch.Tensor? _curSample;
    private readonly List<torch.Tensor> _ets = [];

    /// <summary>A PNDM/PLMS sampler for <paramref name="config"/>.</summary>
    /// <param name="config">A <c>PNDMScheduler</c> config.</param>
    /// <exception cref="DiffusionCacheException">A config for another class, or a refused value
    /// (<c>prediction_type</c> <c>sample</c>).</exception>
    public PndmScheduler(SchedulerConfig config) : base(config, SchedulerConfig.Pndm)
    {
        if (config.PredictionType == PredictionType.Sample)
            throw Unsupported("prediction_type", "sample", "epsilon, v_prediction (as in diffusers' PNDMScheduler)");
        _finalAlphaCumprod = config.SetAlphaToOne ? 1f : Alphas[0];
    }

    /// <inheritdoc />
    protected override double[] ComputeTimesteps(int n)
    {
        int t = TrainSteps;
        // _timesteps, ascending
        long[] ascending = Config.TimestepSpacing switch
        {
            TimestepSpacing.Leading => [.. Enumerable.Range(0, n).Select(i => (long)i * (t / n) + Config.StepsOffset)],
            TimestepSpacing.Trailing => [.. Numpy.Arange(t, 0, -((double)t / n)).Select(v => (long)Numpy.Round(v) - 1).Reverse()],
            _ => [.. Numpy.Linspace(0, t - 1, n).Select(v => (long)Numpy.Round(v))],
        };
        long[] prk, plms;
        if (Config.SkipPrkSteps)
        {
            // concatenate([_timesteps[:-1], _timesteps[-2:-1], _timesteps[-1:]])[::-1]
            prk = [];
            var list = ascending[..^1].ToList();
            if (ascending.Length >= 2) list.Add(ascending[^2]);
            list.Add(ascending[^1]);
            list.Reverse();
            plms = [.. list];
        }
        else
        {
            if (n < PndmOrder)
                throw new DiffusionCacheException($"{Name}: with skip_prk_steps = false at least {PndmOrder} inference " +
                    $"steps are needed, got {n} (diffusers fails with a NumPy broadcasting error)");
            // prk = _timesteps[-4:].repeat(2) + tile([0, T // n // 2], 4); prk[:-1].repeat(2)[1:-1][::-1]
            long half = t / n / 2;
            var last4 = ascending[^PndmOrder..];
            var raw = new long[2 * PndmOrder];
            for (int i = 0; i < raw.Length; i++) raw[i] = last4[i / 2] + (i % 2 == 0 ? 0 : half);
            var doubled = raw[..^1].SelectMany(v => new[] { v, v }).ToArray();
            prk = [.. doubled[1..^1].Reverse()];
            plms = [.. ascending[..^3].Reverse()];
        }
        _prkCount = prk.Length;
        return [.. prk.Concat(plms).Select(v => (double)v)];
    }

    /// <inheritdoc />
    protected override torch.Tensor StepCore(torch.Tensor modelOutput, int stepIndex, torch.Tensor sample, StepNoise? noise)
    {
        long timestep = TimestepAt(stepIndex);
        return _counter < _prkCount && !Config.SkipPrkSteps
            ? StepPrk(modelOutput, timestep, sample)
            : StepPlms(modelOutput, timestep, sample);
    }

    private torch.Tensor StepPrk(torch.Tensor modelOutput, long timestep, torch.Tensor sample)
    {
        long diffToPrev = _counter % 2 == 1 ? 0 : TrainSteps / NumInferenceSteps / 2;
        long prevTimestep = timestep - diffToPrev;
        timestep = (long)Timesteps[_counter / 4 * 4];

        switch (_counter % 4)
        {
            case 0:
                Replace(ref _curModelOutput, modelOutput * (float)(1.0 / 6));
                _ets.Add(Keep(modelOutput));
                Replace(ref _curSample, sample);
                break;
            case 1:
            case 2:
                Replace(ref _curModelOutput, _curModelOutput! + modelOutput * (float)(1.0 / 3));
                break;
            default:
                modelOutput = _curModelOutput! + modelOutput * (float)(1.0 / 6);
                Clear(ref _curModelOutput);
                break;
        }
        var curSample = _curSample ?? sample;
        var prev = PrevSample(curSample, timestep, prevTimestep, modelOutput);
        _counter++;
        return prev;
    }

    private torch.Tensor StepPlms(torch.Tensor modelOutput, long timestep, torch.Tensor sample)
    {
        if (!Config.SkipPrkSteps && _ets.Count < 3)
            throw new DiffusionCacheException($"{Name}: PLMS step before the 12 PRK warm-up steps");
        long stride = TrainSteps / NumInferenceSteps;
        long prevTimestep = timestep - stride;
        if (_counter != 1)
        {
            while (_ets.Count > 3)
            {
                _ets[0].Dispose();
                _ets.RemoveAt(0);
            }
            _ets.Add(Keep(modelOutput));
        }
        else
        {
            prevTimestep = timestep;
            timestep += stride;
        }

        if (_ets.Count == 1 && _counter == 0)
        {
            Replace(ref _curSample, sample);
        }
        else if (_ets.Count == 1 && _counter == 1)
        {
            modelOutput = (modelOutput + _ets[^1]) / 2;
            sample = _curSample!.alias();
            Clear(ref _curSample);
        }
        else if (_ets.Count == 2)
        {
            modelOutput = (_ets[^1] * 3 - _ets[^2]) / 2;
        }
        else if (_ets.Count == 3)
        {
            modelOutput = (_ets[^1] * 23 - _ets[^2] * 16 + _ets[^3] * 5) / 12;
        }
        else
        {
            modelOutput = (_ets[^1] * 55 - _ets[^2] * 59 + _ets[^3] * 37 - _ets[^4] * 9) * (float)(1.0 / 24);
        }
        var prev = PrevSample(sample, timestep, prevTimestep, modelOutput);
        _counter++;
        return prev;
    }

    /// <summary>Formula (9) of the PNDM paper, as diffusers' <c>_get_prev_sample</c> (float32 scalars).</summary>
    private torch.Tensor PrevSample(torch.Tensor sample, long timestep, long prevTimestep, torch.Tensor modelOutput)
    {
        float alphaProd = AlphaAt(timestep);
        float alphaProdPrev = prevTimestep >= 0 ? AlphaAt(prevTimestep) : _finalAlphaCumprod;
        float betaProd = 1f - alphaProd;
        float betaProdPrev = 1f - alphaProdPrev;
        if (Config.PredictionType == PredictionType.VPrediction)
            modelOutput = modelOutput * MathF.Sqrt(alphaProd) + sample * MathF.Sqrt(betaProd);

        float sampleCoeff = MathF.Sqrt(alphaProdPrev / alphaProd);
        float denom = alphaProd * MathF.Sqrt(betaProdPrev) + MathF.Sqrt(alphaProd * betaProd * alphaProdPrev);
        return sample * sampleCoeff - modelOutput * (alphaProdPrev - alphaProd) / denom;
    }

    private static void Replace(ref torch.Tensor? slot, torch.Tensor value)
    {
        var kept = Keep(value);
        slot?.Dispose();
        slot = kept;
    }

    private static void Clear(ref torch.Tensor? slot)
    {
        slot?.Dispose();
        slot = null;
    }

    /// <inheritdoc />
    private protected override void DetachState()
    {
        _curModelOutput = Detached(_curModelOutput);
        _curSample = Detached(_curSample);
        for (int i = 0; i < _ets.Count; i++) _ets[i] = Detached(_ets[i])!;
    }

    /// <inheritdoc />
    protected override void ResetState()
    {
        _counter = 0;
        Clear(ref _curModelOutput);
        Clear(ref _curSample);
        foreach (var e in _ets) e.Dispose();
        _ets.Clear();
    }
}
