using TorchSharp;

namespace DiffusionCache.Schedulers;

/// <summary>What the five schedulers share: the training schedule, the checks of the config and of the arguments,
/// step ordering, and tensor ownership (every step runs in its own dispose scope).</summary>
public abstract class SchedulerBase : IScheduler
{
    private readonly float[] _alphasCumprod;
    private double[] _timesteps = [];
    private int? _lastStep;

    /// <summary>Checks <paramref name="config"/> and builds its training schedule (<c>alphas_cumprod</c>).</summary>
    /// <param name="config">The scheduler config; its <see cref="SchedulerConfig.ClassName"/> must be
    /// <paramref name="className"/>.</param>
    /// <param name="className">The diffusers class the derived scheduler implements.</param>
    /// <exception cref="DiffusionCacheException">A config for another class, <c>num_train_timesteps</c> &lt; 1,
    /// <c>steps_offset</c> &lt; 0, <c>thresholding</c> or <c>rescale_betas_zero_snr</c> set, or <c>trained_betas</c>
    /// of the wrong length.</exception>
    protected SchedulerBase(SchedulerConfig config, string className)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (config.ClassName != className)
            throw new DiffusionCacheException($"{className}: config is for '{config.ClassName}'");
        Config = config;
        if (config.NumTrainTimesteps < 1)
            throw Unsupported("num_train_timesteps", config.NumTrainTimesteps, "a positive integer");
        if (config.StepsOffset < 0)
            throw Unsupported("steps_offset", config.StepsOffset, "an integer >= 0");
        if (config.Thresholding)
            throw Unsupported("thresholding", true, "false; dynamic thresholding is not implemented");
        if (config.RescaleBetasZeroSnr)
            throw Unsupported("rescale_betas_zero_snr", true, "false; zero-terminal-SNR rescaling is not implemented");
        _alphasCumprod = NoiseSchedule.AlphasCumprod(config);
    }

    /// <inheritdoc />
    public SchedulerConfig Config { get; }
    /// <summary>The diffusers class name, for error messages.</summary>
    protected string Name => Config.ClassName;
    /// <summary>T, the number of training timesteps (<c>num_train_timesteps</c>).</summary>
    protected int TrainSteps => Config.NumTrainTimesteps;
    /// <summary>The training <c>alphas_cumprod</c> (T float32 values; cumulative products despite the name), as the
    /// scheduler's own array: read it, do not change it.</summary>
    protected float[] Alphas => _alphasCumprod;
    /// <inheritdoc />
    public IReadOnlyList<float> AlphasCumprod => _alphasCumprod;
    /// <inheritdoc />
    public int NumInferenceSteps { get; private set; }
    /// <inheritdoc />
    public IReadOnlyList<double> Timesteps => _timesteps;
    /// <inheritdoc />
    public virtual float InitNoiseSigma => 1f;

    /// <inheritdoc />
    public void SetTimesteps(int numInferenceSteps)
    {
        if (numInferenceSteps < 1)
            throw new DiffusionCacheException($"{Name}: num_inference_steps must be at least 1, got {numInferenceSteps}");
        if (numInferenceSteps > TrainSteps)
            throw new DiffusionCacheException($"{Name}: num_inference_steps = {numInferenceSteps} is more than " +
                $"num_train_timesteps = {TrainSteps}");
        var timesteps = ComputeTimesteps(numInferenceSteps);
        _timesteps = timesteps;
        NumInferenceSteps = numInferenceSteps;
        Reset();
    }

    /// <summary>The timesteps for <paramref name="n"/> steps (already checked: 1 ≤ n ≤ T), also preparing any
    /// per-schedule tables (sigmas).</summary>
    protected abstract double[] ComputeTimesteps(int n);

    /// <inheritdoc />
    public torch.Tensor ScaleModelInput(torch.Tensor sample, int stepIndex)
    {
        ArgumentNullException.ThrowIfNull(sample);
        CheckIndex(stepIndex);
        using var scope = torch.NewDisposeScope();
        return ScaleCore(sample, stepIndex).MoveToOuterDisposeScope();
    }

    /// <summary>The scaling of <see cref="ScaleModelInput"/> (arguments already checked), inside a dispose scope:
    /// return a new tensor; the default is a copy of <paramref name="sample"/>.</summary>
    /// <param name="sample">The current sample.</param>
    /// <param name="stepIndex">The loop index of the step.</param>
    protected virtual torch.Tensor ScaleCore(torch.Tensor sample, int stepIndex) => sample.clone();

    /// <inheritdoc />
    public torch.Tensor Step(torch.Tensor modelOutput, int stepIndex, torch.Tensor sample, StepNoise? noise = null)
    {
        ArgumentNullException.ThrowIfNull(modelOutput);
        ArgumentNullException.ThrowIfNull(sample);
        CheckIndex(stepIndex);
        if (_lastStep is int last && stepIndex != last + 1)
            throw new DiffusionCacheException($"{Name}: step {stepIndex} called after step {last}; steps of one " +
                "generation must come in loop order (call Reset() or SetTimesteps() to start a new one)");
        if (!modelOutput.shape.SequenceEqual(sample.shape))
            throw new DiffusionCacheException($"{Name}: model output shape [{string.Join(",", modelOutput.shape)}] " +
                $"does not match the sample shape [{string.Join(",", sample.shape)}]");
        if (modelOutput.dtype != torch.float32 || sample.dtype != torch.float32)
            throw new DiffusionCacheException($"{Name}: expects float32 tensors, got model output {modelOutput.dtype} " +
                $"and sample {sample.dtype}");
        using var scope = torch.NewDisposeScope();
        var result = StepCore(modelOutput, stepIndex, sample, noise);
        _lastStep = stepIndex;
        return result.MoveToOuterDisposeScope();
    }

    /// <summary>One step, inside a dispose scope: temporaries die with it; the state a scheduler keeps across steps
    /// must be detached from the scope (see <see cref="Keep"/>).</summary>
    protected abstract torch.Tensor StepCore(torch.Tensor modelOutput, int stepIndex, torch.Tensor sample, StepNoise? noise);

    /// <inheritdoc />
    public void Reset()
    {
        _lastStep = null;
        ResetState();
    }

    /// <summary>Drops the per-generation state (disposing kept tensors).</summary>
    protected virtual void ResetState() { }

    /// <summary>A copy of <paramref name="tensor"/> owned by the scheduler (outlives the step's dispose scope).</summary>
    protected static torch.Tensor Keep(torch.Tensor tensor) => tensor.clone().DetachFromDisposeScope();

    /// <summary>Cuts the tensors a multistep scheduler keeps from earlier steps off the autograd graph, so that a
    /// truncated back-propagation through sampling (scale-shift distillation with an unroll window) does not reach
    /// into a window whose graph is already freed. Values are unchanged; a no-op for single-step schedulers.</summary>
    internal void DetachHistory() => DetachState();

    /// <summary>Replaces every kept tensor by a detached alias (see <see cref="DetachHistory"/>).</summary>
    private protected virtual void DetachState() { }

    /// <summary>A detached alias of <paramref name="kept"/>, which it disposes; null stays null.</summary>
    private protected static torch.Tensor? Detached(torch.Tensor? kept)
    {
        if (kept is null) return null;
        var alias = kept.detach().DetachFromDisposeScope();
        kept.Dispose();
        return alias;
    }

    /// <summary><c>alphas_cumprod[t]</c>, refusing a timestep outside the table (diffusers raises IndexError; with
    /// <c>leading</c> spacing, <c>steps_offset</c> 1 and as many steps as training steps, it yields t = T).</summary>
    protected float AlphaAt(long t)
    {
        if (t < 0 || t >= _alphasCumprod.Length)
            throw new DiffusionCacheException($"{Name}: timestep {t} is outside alphas_cumprod " +
                $"(num_train_timesteps = {_alphasCumprod.Length})");
        return _alphasCumprod[t];
    }

    /// <summary>The timestep of step <paramref name="stepIndex"/> as an integer (truncated: for the integral
    /// timesteps of DDPM, DDIM, PNDM and DPM-Solver).</summary>
    protected long TimestepAt(int stepIndex) => (long)_timesteps[stepIndex];

    /// <summary>The exception that refuses a config value: "<c>{class}: {key} = {value} is not supported (supported:
    /// {supported})</c>".</summary>
    /// <param name="key">The diffusers config key, e.g. <c>solver_type</c>.</param>
    /// <param name="value">The refused value.</param>
    /// <param name="supported">What is accepted, in words.</param>
    protected DiffusionCacheException Unsupported(string key, object? value, string supported) =>
        SchedulerConfig.Unsupported(Name, key, value, supported);

    private void CheckIndex(int stepIndex)
    {
        if (_timesteps.Length == 0)
            throw new DiffusionCacheException($"{Name}: call SetTimesteps before stepping");
        if (stepIndex < 0 || stepIndex >= _timesteps.Length)
            throw new DiffusionCacheException($"{Name}: step index {stepIndex} is outside 0..{_timesteps.Length - 1}");
    }

    /// <summary>The x0 prediction of DDPM/DDIM from a model output (float32 scalars, as diffusers computes them).</summary>
    protected torch.Tensor PredictOriginal(torch.Tensor modelOutput, torch.Tensor sample, float alphaProd)
    {
        float betaProd = 1f - alphaProd;
        return Config.PredictionType switch
        {
            PredictionType.Epsilon => (sample - modelOutput * MathF.Sqrt(betaProd)) / MathF.Sqrt(alphaProd),
            PredictionType.Sample => modelOutput,
            _ => sample * MathF.Sqrt(alphaProd) - modelOutput * MathF.Sqrt(betaProd),
        };
    }

    /// <summary>Frees the tensors kept between steps (PNDM's and DPM-Solver's history), as <see cref="Reset"/>
    /// does; the scheduler holds nothing else.</summary>
    public void Dispose()
    {
        ResetState();
        GC.SuppressFinalize(this);
    }

    /// <summary>Timesteps of the three spacings as the DDPM/DDIM family builds them (descending, int64):
    /// <c>leading</c>: <c>arange(n) * (T // n)</c> reversed, plus <c>steps_offset</c>; <c>trailing</c>:
    /// <c>round(arange(T, 0, -T / n)) - 1</c>; <c>linspace</c>: <c>round(linspace(0, T - 1, n))</c> reversed.</summary>
    protected double[] DescendingTimesteps(int n)
    {
        int t = TrainSteps;
        switch (Config.TimestepSpacing)
        {
            case TimestepSpacing.Leading:
            {
                long ratio = t / n;
                return [.. Enumerable.Range(0, n).Reverse().Select(i => (double)(i * ratio + Config.StepsOffset))];
            }
            case TimestepSpacing.Trailing:
                return [.. Numpy.Arange(t, 0, -((double)t / n)).Select(v => Numpy.Round(v) - 1)];
            default:
                return [.. Numpy.Linspace(0, t - 1, n).Select(Numpy.Round).Reverse()];
        }
    }
}
