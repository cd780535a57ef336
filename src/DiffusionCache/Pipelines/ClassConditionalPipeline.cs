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
    public LabelEncoder LabelEncoder { get; }

    private ClassConditionalPipeline(string folder, UNet2DConditionModel unet, AutoencoderKL vae, LabelEncoder labels, SchedulerConfig scheduler)
        : base(folder, unet, vae, scheduler)
    {
        LabelEncoder = labels;
    }

    public int NumLabels => LabelEncoder.Config.NumLabels;
    public int LatentSide => UNet.SampleSize;

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

    public override void Dispose()
    {
        base.Dispose();
        LabelEncoder.Dispose();
    }
}
