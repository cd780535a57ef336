using DiffusionCache.Caching;
using DiffusionCache.Models.Autoencoders;
using DiffusionCache.Models.Conditioning;
using DiffusionCache.Models.Loading;
using DiffusionCache.Models.UNets;
using DiffusionCache.Schedulers;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Pipelines;

/// <summary>
/// A class-conditional latent diffusion model loaded from a pipeline folder (see <see cref="LatentPipelineFolder"/>):
/// labels become the U-Net's cross-attention context through the label encoder, exactly where a Stable Diffusion
/// pipeline would put text embeddings, and sampling goes through the one loop (<see cref="DiffusionSampler"/>).
/// </summary>
public sealed class ClassConditionalPipeline : IDisposable
{
    public string Folder { get; }
    public UNet2DConditionModel UNet { get; }
    public AutoencoderKL Vae { get; }
    public LabelEncoder LabelEncoder { get; }
    public SchedulerConfig SchedulerConfig { get; }

    private ClassConditionalPipeline(string folder, UNet2DConditionModel unet, AutoencoderKL vae, LabelEncoder labels, SchedulerConfig scheduler)
    {
        Folder = folder;
        UNet = unet;
        Vae = vae;
        LabelEncoder = labels;
        SchedulerConfig = scheduler;
    }

    public int NumLabels => LabelEncoder.Config.NumLabels;
    public int LatentSide => UNet.SampleSize;

    public static ClassConditionalPipeline Load(string folder)
    {
        if (!File.Exists(Path.Combine(folder, "model_index.json")))
            throw new DiffusionCacheException($"{folder}: not a pipeline folder (model_index.json not found)");
        var scheduler = LatentPipelineFolder.LoadSchedulerConfig(folder);
        var unet = UNetLoader.Load(Path.Combine(folder, "unet")) as UNet2DConditionModel
            ?? throw new DiffusionCacheException($"{folder}/unet: expected a UNet2DConditionModel");
        AutoencoderKL? vae = null;
        try
        {
            vae = AutoencoderLoader.Load(Path.Combine(folder, "vae"));
            var labels = LatentPipelineFolder.LoadLabelEncoder(folder);
            if (labels.Config.EmbeddingDim != unet.ContextDim)
                throw new DiffusionCacheException($"{folder}: label_encoder embedding_dim {labels.Config.EmbeddingDim} differs from the U-Net's cross_attention_dim {unet.ContextDim}");
            return new ClassConditionalPipeline(folder, unet, vae, labels, scheduler);
        }
        catch
        {
            unet.Dispose();
            vae?.Dispose();
            throw;
        }
    }

    /// <summary>A solver (<see cref="Solvers"/>: ddim, ddpm, plms, dpm++, euler) with this model's noise schedule.</summary>
    public IScheduler CreateScheduler(string solver = "ddim") => SchedulerFactory.Create(Solvers.For(solver, SchedulerConfig));

    /// <summary>The sampling request for <paramref name="labels"/> (one image per label, seeded noise).</summary>
    public SamplingRequest Request(IReadOnlyList<long> labels, long seed, int steps, double guidance)
    {
        foreach (var l in labels)
            if (l < 0 || l >= NumLabels) throw new DiffusionCacheException($"label {l} is outside 0..{NumLabels - 1}");
        using var noGrad = no_grad();
        using var ids = tensor(labels.ToArray());
        bool guided = guidance != 1.0;
        return new SamplingRequest
        {
            Steps = steps,
            Batch = labels.Count,
            Height = LatentSide,
            Width = LatentSide,
            Context = LabelEncoder.call(ids).DetachFromDisposeScope(),
            UnconditionalContext = guided ? LabelEncoder.Null(labels.Count, ids.device).DetachFromDisposeScope() : null,
            GuidanceScale = guidance,
            Seed = seed,
        };
    }

    /// <summary>Samples latents and decodes them: images in [-1, 1], [B, C, H, W].</summary>
    public Tensor Generate(IScheduler scheduler, SamplingRequest request, ICachePolicy? policy = null,
        IReadOnlyList<IStepObserver>? observers = null, CancellationToken cancel = default)
    {
        using var latents = CachedSampling.Sample(UNet, scheduler, request, policy, observers, cancel);
        return Decode(latents);
    }

    /// <summary>Samples and decodes one image per label; the label contexts live only for this call.</summary>
    public Tensor Generate(IScheduler scheduler, IReadOnlyList<long> labels, long seed, int steps, double guidance,
        ICachePolicy? policy = null, IReadOnlyList<IStepObserver>? observers = null, CancellationToken cancel = default)
    {
        var request = Request(labels, seed, steps, guidance);
        try
        {
            return Generate(scheduler, request, policy, observers, cancel);
        }
        finally
        {
            request.Context?.Dispose();
            request.UnconditionalContext?.Dispose();
        }
    }

    public Tensor Decode(Tensor latents)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        return Vae.Decode(latents / Vae.ScalingFactor).clamp(-1, 1).MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        UNet.Dispose();
        Vae.Dispose();
        LabelEncoder.Dispose();
    }
}
