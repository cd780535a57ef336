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
public sealed class ClassConditionalPipeline : LatentDiffusionPipeline
{
    /// <summary>Turns class labels into the U-Net's cross-attention context; its null label (<see cref="NumLabels"/>)
    /// is the unconditional input of guidance. Owned by the pipeline and disposed with it.</summary>
    public LabelEncoder LabelEncoder { get; }

    private ClassConditionalPipeline(string folder, UNet2DConditionModel unet, AutoencoderKL vae, LabelEncoder labels, SchedulerConfig scheduler)
        : base(folder, unet, vae, scheduler)
    {
        LabelEncoder = labels;
    }

    /// <summary>The number of classes: labels run from 0 to <c>NumLabels - 1</c>.</summary>
    public int NumLabels => LabelEncoder.Config.NumLabels;
    /// <summary>The side of the square latents sampled (the U-Net's <c>sample_size</c>); images are
    /// <c>LatentSide * VaeScaleFactor</c> pixels square.</summary>
    public int LatentSide => UNet.SampleSize;

    /// <summary>Loads a class-conditional pipeline folder (<see cref="LatentPipelineFolder"/>): its U-Net, VAE, label
    /// encoder and scheduler config. Components already loaded are disposed if a later one fails.</summary>
    /// <param name="folder">The pipeline folder, with <c>model_index.json</c>.</param>
    /// <param name="options">Compute type, device and weights variant; null: float32 on the CPU.</param>
    /// <exception cref="DiffusionCacheException">Not a pipeline folder, a U-Net that is not a
    /// <c>UNet2DConditionModel</c>, a label encoder whose width differs from the U-Net's
    /// <c>cross_attention_dim</c>, or a component that fails to load.</exception>
    public static ClassConditionalPipeline Load(string folder, PipelineLoadOptions? options = null)
    {
        options ??= new PipelineLoadOptions();
        if (!File.Exists(Path.Combine(folder, "model_index.json")))
            throw new DiffusionCacheException($"{folder}: not a pipeline folder (model_index.json not found)");
        var scheduler = LatentPipelineFolder.LoadSchedulerConfig(folder);
        using var load = new ComponentLoad();
        var unet = load.Add(UNetLoader.Load(Path.Combine(folder, "unet"), options.Variant, options.Dtype, options.Device)) as UNet2DConditionModel
            ?? throw new DiffusionCacheException($"{folder}/unet: expected a UNet2DConditionModel");
        var vae = load.Add(AutoencoderLoader.Load(Path.Combine(folder, "vae"), options.Dtype, options.Device, options.Variant));
        var labels = load.Add(LatentPipelineFolder.LoadLabelEncoder(folder, options.Dtype, options.Device));
        if (labels.Config.EmbeddingDim != unet.ContextDim)
            throw new DiffusionCacheException($"{folder}: label_encoder embedding_dim {labels.Config.EmbeddingDim} differs from the U-Net's cross_attention_dim {unet.ContextDim}");
        load.Keep();
        return new ClassConditionalPipeline(folder, unet, vae, labels, scheduler);
    }

    /// <summary>The sampling request for <paramref name="labels"/> (one image per label, seeded noise).</summary>
    public SamplingRequest Request(IReadOnlyList<long> labels, long seed, int steps, double guidance)
    {
        foreach (var l in labels)
            if (l < 0 || l >= NumLabels) throw new DiffusionCacheException($"label {l} is outside 0..{NumLabels - 1}");
        using var noGrad = no_grad();
        using var ids = tensor(labels.ToArray(), device: LabelEncoder.parameters().First().device);
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

    /// <summary>Disposes the U-Net, the VAE and the label encoder.</summary>
    public override void Dispose()
    {
        base.Dispose();
        LabelEncoder.Dispose();
    }
}
