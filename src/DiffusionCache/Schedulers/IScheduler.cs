using TorchSharp;

namespace DiffusionCache.Schedulers;

/// <summary>
/// A diffusion sampler (a diffusers scheduler) that knows nothing about the model. The denoising loop is
/// <code>
/// s.SetTimesteps(n);
/// x = x_T * s.InitNoiseSigma;
/// for (int i = 0; i &lt; s.Timesteps.Count; i++)
///     x = s.Step(model(s.ScaleModelInput(x, i), s.Timesteps[i]), i, x);
/// </code>
/// Steps are addressed by their loop index, not by timestep value: PNDM repeats timesteps, so only the index says
/// which call is meant. Within one generation the calls must come in loop order (the first one may start anywhere,
/// as diffusers' <c>set_begin_index</c> allows); <see cref="Reset"/> or <see cref="SetTimesteps"/> starts a new
/// generation with no state left over (PNDM's counter and history, DPM-Solver's history and
/// <c>lower_order_nums</c>). Tensors passed in are never disposed or kept; the returned tensor belongs to the caller.
/// </summary>
public interface IScheduler : IDisposable
{
    /// <summary>The config this scheduler was built from: its class, training noise schedule and options.</summary>
    SchedulerConfig Config { get; }

    /// <summary>The cumulative products of <c>1 - betas</c> of the training schedule (float32).</summary>
    IReadOnlyList<float> AlphasCumprod { get; }

    /// <summary>The argument of the last <see cref="SetTimesteps"/>; 0 before the first call.</summary>
    int NumInferenceSteps { get; }

    /// <summary>The timesteps in loop order after <see cref="SetTimesteps"/>: integral values except for Euler, whose
    /// timesteps are float32 values. Their count is the number of <see cref="Step"/> calls (PNDM: more than
    /// <see cref="NumInferenceSteps"/>).</summary>
    IReadOnlyList<double> Timesteps { get; }

    /// <summary>The standard deviation of the initial noise: 1, except for Euler.</summary>
    float InitNoiseSigma { get; }

    /// <summary>Builds the timesteps for <paramref name="numInferenceSteps"/> steps (1 ..
    /// <c>num_train_timesteps</c>) and resets the state.</summary>
    /// <exception cref="DiffusionCacheException"><paramref name="numInferenceSteps"/> is outside 1 ..
    /// <c>num_train_timesteps</c> (PNDM with its Runge-Kutta warm-up also needs at least 4).</exception>
    void SetTimesteps(int numInferenceSteps);

    /// <summary>The model input at step <paramref name="stepIndex"/> (Euler divides by
    /// <c>sqrt(sigma^2 + 1)</c>; the others return a copy of <paramref name="sample"/>).</summary>
    /// <param name="sample">The current sample x_t, any shape.</param>
    /// <param name="stepIndex">The loop index of the step, 0 .. <c>Timesteps.Count - 1</c>.</param>
    /// <exception cref="DiffusionCacheException">Called before <see cref="SetTimesteps"/>, or with an index outside
    /// <see cref="Timesteps"/>.</exception>
    torch.Tensor ScaleModelInput(torch.Tensor sample, int stepIndex);

    /// <summary>One solver step: the sample at the next timestep from the model output at step
    /// <paramref name="stepIndex"/>. <paramref name="noise"/> is needed only by the stochastic steps (DDPM at
    /// <c>t &gt; 0</c>, DDIM with <c>eta &gt; 0</c>); they fail without it.</summary>
    /// <param name="modelOutput">The (guided) model output at this step, float32, shaped like
    /// <paramref name="sample"/> (e.g. [batch, channels, h, w]), read as
    /// <see cref="SchedulerConfig.PredictionType"/>.</param>
    /// <param name="stepIndex">The loop index of the step: the one after the previous call, or any index for the
    /// first step of a generation.</param>
    /// <param name="sample">The current sample x_t, float32.</param>
    /// <param name="noise">The noise of a stochastic step; ignored by deterministic ones.</param>
    /// <returns>The sample at the next timestep (a new tensor, owned by the caller).</returns>
    /// <exception cref="DiffusionCacheException">A step out of loop order or out of range, tensors that are not
    /// float32 or differ in shape, a stochastic step without <paramref name="noise"/>, or a timestep outside
    /// <see cref="AlphasCumprod"/> (<c>leading</c> spacing with as many steps as training steps).</exception>
    torch.Tensor Step(torch.Tensor modelOutput, int stepIndex, torch.Tensor sample, StepNoise? noise = null);

    /// <summary>Forgets the state of the running generation; the timesteps stay.</summary>
    void Reset();
}

/// <summary>A scheduler driven by a sigma table (DPM-Solver, Euler).</summary>
public interface ISigmaScheduler : IScheduler
{
    /// <summary><c>scheduler.sigmas</c> after <see cref="IScheduler.SetTimesteps"/>: one per step plus the final
    /// sigma (float32).</summary>
    IReadOnlyList<float> Sigmas { get; }
}

/// <summary>The random noise a stochastic step consumes: a caller-supplied tensor (the shape of the sample), or
/// draws from a seeded <see cref="torch.Generator"/> (<c>torch.randn(shape, generator)</c>, as diffusers'
/// <c>randn_tensor</c> does on CPU).</summary>
public sealed class StepNoise
{
    private StepNoise(torch.Tensor? tensor, torch.Generator? generator)
    {
        Tensor = tensor;
        Generator = generator;
    }

    /// <summary>The caller's noise, used as is at every stochastic step (converted to the sample's dtype and device
    /// when they differ); null when the noise is drawn from <see cref="Generator"/>.</summary>
    public torch.Tensor? Tensor { get; }
    /// <summary>The generator each stochastic step draws fresh noise from (<c>torch.randn</c> with the sample's shape,
    /// dtype and device, so it must live on the sample's device); null when <see cref="Tensor"/> is given.</summary>
    public torch.Generator? Generator { get; }

    /// <summary>Fixed noise: <paramref name="noise"/>, shaped like the sample, at every stochastic step (a step
    /// refuses another shape). The tensor stays the caller's: it is neither copied nor disposed.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="noise"/> is null.</exception>
    public static StepNoise FromTensor(torch.Tensor noise) => new(noise ?? throw new ArgumentNullException(nameof(noise)), null);

    /// <summary>Noise drawn from <paramref name="generator"/> at each stochastic step; each draw advances it, so a
    /// generator seeded the same way reproduces a run. The generator stays the caller's.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="generator"/> is null.</exception>
    public static StepNoise FromGenerator(torch.Generator generator) =>
        new(null, generator ?? throw new ArgumentNullException(nameof(generator)));

    /// <summary>Noise shaped like <paramref name="like"/>: the supplied tensor (checked) or a fresh draw.</summary>
    internal torch.Tensor Draw(torch.Tensor like, string scheduler)
    {
        if (Tensor is { } t)
        {
            if (!t.shape.SequenceEqual(like.shape))
                throw new DiffusionCacheException($"{scheduler}: noise shape [{string.Join(",", t.shape)}] does not " +
                    $"match the sample shape [{string.Join(",", like.shape)}]");
            return t.dtype == like.dtype && t.device == like.device ? t : t.to(like.dtype, like.device);
        }
        return torch.randn(like.shape, like.dtype, like.device, generator: Generator);
    }
}
