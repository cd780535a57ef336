using DiffusionCache.Models.UNets;
using DiffusionCache.Pipelines;
using DiffusionCache.Schedulers;
using static TorchSharp.torch;

namespace DiffusionCache.Caching;

/// <summary>Runs the one sampling loop with a cache policy attached to the U-Net's seam for the duration of the
/// generation (and told about its steps). With no policy this is plain sampling.</summary>
public static class CachedSampling
{
    /// <summary>Samples with <see cref="DiffusionSampler.Sample"/> while <paramref name="policy"/> is attached to
    /// <paramref name="unet"/>'s seam and registered as the first step observer; the policy is detached afterwards
    /// (also on failure or cancellation) but not disposed, so its <see cref="ICachePolicy.Statistics"/> stay
    /// readable.</summary>
    /// <param name="unet">The denoiser the policy was built for.</param>
    /// <param name="scheduler">The solver that turns model outputs into the next sample.</param>
    /// <param name="request">Steps, batch, conditioning, guidance and initial noise of the generation.</param>
    /// <param name="policy">The caching method, or null for plain sampling.</param>
    /// <param name="observers">Further step observers (progress, tracing), told after the policy.</param>
    /// <param name="cancel">Checked between steps.</param>
    /// <returns>The final sample, float32 [batch, in_channels, height, width] (latents for latent models), outside
    /// every dispose scope: the caller owns and disposes it.</returns>
    public static Tensor Sample(DiffusionUNet unet, IScheduler scheduler, SamplingRequest request, ICachePolicy? policy,
        IReadOnlyList<IStepObserver>? observers = null, CancellationToken cancel = default)
    {
        if (policy is null) return DiffusionSampler.Sample(unet, scheduler, request, observers, cancel);
        using var attached = unet.Seam.Attach(policy);
        return DiffusionSampler.Sample(unet, scheduler, request, [policy, .. observers ?? []], cancel);
    }
}
