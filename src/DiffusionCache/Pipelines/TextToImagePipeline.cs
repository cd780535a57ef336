using DiffusionCache.Caching;
using DiffusionCache.Formats.Checkpoints;
using DiffusionCache.Formats.Diffusers;
using DiffusionCache.Models.Autoencoders;
using DiffusionCache.Models.Config;
using DiffusionCache.Models.Text;
using DiffusionCache.Models.UNets;
using DiffusionCache.Schedulers;
using static TorchSharp.torch;

namespace DiffusionCache.Pipelines;

/// <summary>
/// What Stable Diffusion 1.x/2.x and SDXL share: prompts in, images out through the one sampling loop. They differ
/// only in how prompts become a <see cref="SamplingRequest"/> (<see cref="Request"/>).
/// </summary>
public abstract class TextToImagePipeline : LatentDiffusionPipeline
{
    /// <summary>Takes ownership of loaded components.</summary>
    /// <param name="folder">Where they were loaded from: a diffusers folder or a single checkpoint file.</param>
    /// <param name="unet">The U-Net.</param>
    /// <param name="vae">The VAE.</param>
    /// <param name="scheduler">The scheduler config that came with the model.</param>
    /// <param name="notes">What loading left out (<see cref="Notes"/>).</param>
    protected TextToImagePipeline(string folder, UNet2DConditionModel unet, AutoencoderKL vae, SchedulerConfig scheduler, IReadOnlyList<string> notes)
        : base(folder, unet, vae, scheduler)
    {
        Notes = notes;
    }

    /// <summary>What loading left out, for the caller to show (ignored components).</summary>
    public IReadOnlyList<string> Notes { get; }
    /// <summary>Told about prompts that had to be truncated (diffusers logs the same warning).</summary>
    public abstract event Action<string>? Warning;

    /// <summary>The image height when <see cref="TextToImage.Height"/> is null: the U-Net's <c>sample_size</c> times
    /// the VAE scale factor, as diffusers (512 for SD 1.5, 768 for SD 2.1 768-v, 1024 for SDXL).</summary>
    public int DefaultHeight => UNet.SampleSize * VaeScaleFactor;
    /// <summary>The image width when <see cref="TextToImage.Width"/> is null (same as
    /// <see cref="DefaultHeight"/>).</summary>
    public int DefaultWidth => UNet.SampleSize * VaeScaleFactor;

    /// <summary>Opens a Stable Diffusion 1.x/2.x or SDXL diffusers folder by its <c>model_index.json</c>.</summary>
    public static TextToImagePipeline Open(string folder, PipelineLoadOptions? options = null)
    {
        var index = ModelIndex.Load(folder);
        return index.ClassName switch
        {
            StableDiffusionPipeline.PipelineClass => StableDiffusionPipeline.Load(folder, options),
            StableDiffusionXLPipeline.PipelineClass => StableDiffusionXLPipeline.Load(folder, options),
            "StableDiffusionXLImg2ImgPipeline" => throw new DiffusionCacheException($"{folder}: an SDXL refiner/img2img pipeline, which is not supported yet"),
            var other => throw new DiffusionCacheException(
                $"{folder}: a {other}; text-to-image supports {StableDiffusionPipeline.PipelineClass} and {StableDiffusionXLPipeline.PipelineClass}"),
        };
    }

    /// <summary>Opens a text-to-image model wherever it lies: a diffusers folder (<see cref="Open"/>) or a single-file
    /// checkpoint, Stable Diffusion 1.x/2.x or SDXL as its keys tell
    /// (<see cref="StableDiffusionPipeline.LoadSingleFile"/>, <see cref="StableDiffusionXLPipeline.LoadSingleFile"/>).</summary>
    /// <param name="path">A diffusers folder or a <c>.safetensors</c> checkpoint.</param>
    /// <param name="configFolder">For a single file: a diffusers folder of its family to take configs, scheduler and
    /// tokenizers from; null: the family's defaults. Refused for a folder, which has its own.</param>
    /// <param name="options">Compute type, device, weights variant (folders only); null: float32 on the CPU.</param>
    public static TextToImagePipeline Load(string path, string? configFolder = null, PipelineLoadOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path))
            return configFolder is null ? Open(path, options)
                : throw new DiffusionCacheException($"{path}: a config folder applies to single-file checkpoints; a diffusers folder has its own configs");
        options ??= new PipelineLoadOptions();
        using var checkpoint = SingleFile.Open(path, options);
        return checkpoint.Family == LdmFamily.StableDiffusionXL
            ? StableDiffusionXLPipeline.FromCheckpoint(checkpoint, configFolder, options)
            : StableDiffusionPipeline.FromCheckpoint(checkpoint, configFolder, options);
    }

    /// <summary>Whether <paramref name="dir"/> is a diffusers folder of a text-to-image pipeline we run.</summary>
    public static bool IsTextToImageFolder(string dir) => StableDiffusionPipeline.IsFolder(dir) || StableDiffusionXLPipeline.IsFolder(dir);

    /// <summary>Whether <paramref name="path"/> is a text-to-image model: such a diffusers folder, or a
    /// <c>.safetensors</c> file (a single-file checkpoint; its keys are checked when it is loaded).</summary>
    public static bool IsTextToImageModel(string path) =>
        IsTextToImageFolder(path) || (File.Exists(path) && path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase));

    /// <summary>Checks a call before any work: prompts, sizes (multiples of 8 and of the VAE's factor), clip skip.</summary>
    public abstract void Validate(TextToImage call);

    /// <summary>The sampling request for <paramref name="call"/>; the caller disposes its tensors
    /// (<see cref="Release"/>), as <see cref="Generate(IScheduler, TextToImage, ICachePolicy?, IReadOnlyList{IStepObserver}?, CancellationToken)"/> does.</summary>
    public abstract SamplingRequest Request(TextToImage call);

    /// <summary>Frees the conditioning tensors of a request made by <see cref="Request"/>.</summary>
    public static void Release(SamplingRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        foreach (var t in new[] { request.Context, request.UnconditionalContext, request.TextEmbeds, request.UnconditionalTextEmbeds,
                     request.TimeIds, request.UnconditionalTimeIds })
            t?.Dispose();
    }

    /// <summary>Text to images: [B·n, 3, H, W] in [-1, 1].</summary>
    public Tensor Generate(IScheduler scheduler, TextToImage call, ICachePolicy? policy = null,
        IReadOnlyList<IStepObserver>? observers = null, CancellationToken cancel = default)
    {
        var request = Request(call);
        try
        {
            return Generate(scheduler, request, policy, observers, cancel);
        }
        finally
        {
            Release(request);
        }
    }

    /// <summary>Components a pipeline does not load (safety checker, feature extractor, image encoder).</summary>
    private static readonly string[] Ignored = ["safety_checker", "feature_extractor", "image_encoder"];

    /// <summary>The notes for the components of <paramref name="index"/> that are not loaded; any component that is
    /// neither <paramref name="used"/> nor ignorable is an error naming it.</summary>
    protected static List<string> CheckComponents(ModelIndex index, params string[] used)
    {
        foreach (var extra in index.Components.Values.Where(c => c.IsPresent && !Ignored.Contains(c.Name) && !used.Contains(c.Name)))
            throw new DiffusionCacheException($"{index.Folder}: component '{extra.Name}' ({extra.ClassName}) is not supported");
        return Ignored.Where(n => index.Components.TryGetValue(n, out var c) && c.IsPresent)
            .Select(n => $"{n} ({index.Components[n].ClassName}) is not loaded: DiffusionCache runs no {n.Replace('_', ' ')}").ToList();
    }

    /// <summary>What every text-to-image pipeline checks of its parts: the VAE's latents are the U-Net's input, and the
    /// tokenizer's ids exist in the text encoder's vocabulary.</summary>
    protected static void CheckFit(string origin, UNet2DConditionModel unet, AutoencoderKL vae, ClipTokenizer tokenizer, ClipTextModel text)
    {
        if (vae.LatentChannels != unet.InChannels)
            throw new DiffusionCacheException($"{origin}: the VAE has {vae.LatentChannels} latent channels, the U-Net takes {unet.InChannels}");
        if (tokenizer.VocabSize > text.Config.VocabSize)
            throw new DiffusionCacheException($"{origin}: the tokenizer has {tokenizer.VocabSize} ids, the text encoder {text.Config.VocabSize}");
    }

    /// <summary>A VAE that asks for it (<c>force_upcast</c>) stays in float32 under a half-precision type.</summary>
    protected static ScalarType VaeDtype(AutoencoderKLConfig vae, PipelineLoadOptions options) =>
        vae.ForceUpcast && options.Dtype is ScalarType.Float16 or ScalarType.BFloat16 ? ScalarType.Float32 : options.Dtype;

    /// <summary>Sizes must be positive multiples of 8 and of the VAE's factor.</summary>
    protected void ValidateSize(TextToImage call)
    {
        int height = call.Height ?? DefaultHeight, width = call.Width ?? DefaultWidth;
        int factor = Math.Max(8, VaeScaleFactor);
        if (height <= 0 || width <= 0 || height % factor != 0 || width % factor != 0)
            throw new DiffusionCacheException($"height and width must be positive multiples of {factor}, got {height}x{width}");
        if (call.ImagesPerPrompt < 1) throw new DiffusionCacheException($"images per prompt must be at least 1, got {call.ImagesPerPrompt}");
        if (call.Prompts.Count == 0) throw new DiffusionCacheException("at least one prompt is needed");
    }
}
