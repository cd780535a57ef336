using DiffusionCache.Caching;
using DiffusionCache.Models.Autoencoders;
using DiffusionCache.Models.UNets;
using DiffusionCache.Schedulers;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Pipelines;

/// <summary>
/// What every latent diffusion pipeline shares: a U-Net, a VAE and a noise schedule from a pipeline folder, sampling
/// through the one loop (<see cref="DiffusionSampler"/>, with an optional cache policy) and decoding. Pipelines
/// differ only in how they turn their conditions (labels, prompts) into a <see cref="SamplingRequest"/>.
/// </summary>
public abstract class LatentDiffusionPipeline : IDisposable
{
    /// <summary>Where the pipeline was loaded from: its folder, or the single checkpoint file.</summary>
    public string Folder { get; }
    /// <summary>The denoising U-Net; owned by the pipeline and disposed with it.</summary>
    public UNet2DConditionModel UNet { get; }
    /// <summary>The autoencoder that decodes latents into images; owned by the pipeline and disposed with it.</summary>
    public AutoencoderKL Vae { get; }
    /// <summary>The folder's own scheduler configuration (its noise schedule and default solver).</summary>
    public SchedulerConfig SchedulerConfig { get; }

    /// <summary>Takes ownership of loaded components.</summary>
    /// <param name="folder">Where they were loaded from (<see cref="Folder"/>).</param>
    /// <param name="unet">The U-Net.</param>
    /// <param name="vae">The VAE.</param>
    /// <param name="scheduler">The folder's scheduler config (<see cref="SchedulerConfig"/>).</param>
    protected LatentDiffusionPipeline(string folder, UNet2DConditionModel unet, AutoencoderKL vae, SchedulerConfig scheduler)
    {
        Folder = folder;
        UNet = unet;
        Vae = vae;
        SchedulerConfig = scheduler;
    }

    /// <summary>Image side / latent side.</summary>
    public int VaeScaleFactor => Vae.DownFactor;

    /// <summary>A solver (<see cref="Solvers"/>: ddim, ddpm, plms, dpm++, euler) with this model's noise schedule;
    /// null is the folder's own scheduler, as diffusers would use it.</summary>
    public IScheduler CreateScheduler(string? solver = null) =>
        SchedulerFactory.Create(solver is null ? SchedulerConfig : Solvers.For(solver, SchedulerConfig));

    /// <summary>The diffusers class name of the scheduler <paramref name="solver"/> resolves to.</summary>
    public string SolverClass(string? solver) => solver is null ? SchedulerConfig.ClassName : Solvers.For(solver, SchedulerConfig).ClassName;

    /// <summary>Samples latents (with <paramref name="policy"/> attached, if any) and decodes them: images in
    /// [-1, 1], [B, C, H, W].</summary>
    public Tensor Generate(IScheduler scheduler, SamplingRequest request, ICachePolicy? policy = null,
        IReadOnlyList<IStepObserver>? observers = null, CancellationToken cancel = default)
    {
        using var latents = CachedSampling.Sample(UNet, scheduler, request, policy, observers, cancel);
        return Decode(latents);
    }

    /// <summary>VAE decode of latents divided by the VAE's scaling factor, clamped to [-1, 1] (diffusers'
    /// postprocessing maps that to [0, 1] as x / 2 + 0.5).</summary>
    public Tensor Decode(Tensor latents)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var p = Vae.parameters().First();
        return Vae.Decode(latents.to(p.dtype, p.device) / Vae.ScalingFactor).to(ScalarType.Float32).clamp(-1, 1).MoveToOuterDisposeScope();
    }

    /// <summary>Disposes the U-Net and the VAE (derived pipelines also dispose their encoders).</summary>
    public virtual void Dispose()
    {
        UNet.Dispose();
        Vae.Dispose();
        GC.SuppressFinalize(this);
    }
}
