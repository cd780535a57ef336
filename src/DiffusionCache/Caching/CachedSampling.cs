using DiffusionCache.Models.UNets;
using DiffusionCache.Pipelines;
using DiffusionCache.Schedulers;
using static TorchSharp.torch;

namespace DiffusionCache.Caching;

/// <summary>Runs the one sampling loop with a cache policy attached to the U-Net's seam for the duration of the
/// generation (and told about its steps). With no policy this is plain sampling.</summary>
public static class CachedSampling
{
    public static Tensor Sample(DiffusionUNet unet, IScheduler scheduler, SamplingRequest request, ICachePolicy? policy,
        IReadOnlyList<IStepObserver>? observers = null, CancellationToken cancel = default)
    {
        if (policy is null) return DiffusionSampler.Sample(unet, scheduler, request, observers, cancel);
        using var attached = unet.Seam.Attach(policy);
        return DiffusionSampler.Sample(unet, scheduler, request, [policy, .. observers ?? []], cancel);
    }
}
