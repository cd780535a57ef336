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
    void SetTimesteps(int numInferenceSteps);

    /// <summary>The model input at step <paramref name="stepIndex"/> (Euler divides by
    /// <c>sqrt(sigma^2 + 1)</c>; the others return a copy of <paramref name="sample"/>).</summary>
    torch.Tensor ScaleModelInput(torch.Tensor sample, int stepIndex);

    /// <summary>One solver step: the sample at the next timestep from the model output at step
    /// <paramref name="stepIndex"/>. <paramref name="noise"/> is needed only by the stochastic steps (DDPM at
    /// <c>t &gt; 0</c>, DDIM with <c>eta &gt; 0</c>); they fail without it.</summary>
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

    public torch.Tensor? Tensor { get; }
    public torch.Generator? Generator { get; }

    public static StepNoise FromTensor(torch.Tensor noise) => new(noise ?? throw new ArgumentNullException(nameof(noise)), null);

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
