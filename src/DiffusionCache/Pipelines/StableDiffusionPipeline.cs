using DiffusionCache.Caching;
using DiffusionCache.Formats.Diffusers;
using DiffusionCache.Models.Autoencoders;
using DiffusionCache.Models.Config;
using DiffusionCache.Models.Loading;
using DiffusionCache.Models.Text;
using DiffusionCache.Models.UNets;
using DiffusionCache.Pipelines.Conditioning;
using DiffusionCache.Schedulers;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Pipelines;

/// <summary>How to load a pipeline: compute type, device and weights variant (e.g. "fp16") for every component.
/// A VAE that asks for it (<c>force_upcast</c>) stays in float32 under a half-precision type, as diffusers keeps it.</summary>
public sealed record PipelineLoadOptions(ScalarType Dtype = ScalarType.Float32, Device? Device = null, string? Variant = null);

/// <summary>
/// Stable Diffusion 1.x/2.x text-to-image from a diffusers folder (<c>model_index.json</c> with <c>unet</c>,
/// <c>vae</c>, <c>text_encoder</c>, <c>tokenizer</c>, <c>scheduler</c>), as diffusers 0.27.2's
/// <c>StableDiffusionPipeline</c>: prompts become CLIP contexts (<see cref="ClipPromptEncoder"/>), sampling goes
/// through the one loop with any solver and cache policy, latents are decoded by the VAE. Safety checker, feature
/// extractor and image encoder entries are not loaded (<see cref="Notes"/> says so).
/// </summary>
public sealed class StableDiffusionPipeline : TextToImagePipeline
{
    public const string PipelineClass = "StableDiffusionPipeline";
    private static readonly string[] Ignored = ["safety_checker", "feature_extractor", "image_encoder"];

    public ClipPromptEncoder Prompts { get; }
    public ClipTokenizer Tokenizer => Prompts.Tokenizer;
    public ClipTextModel TextEncoder => Prompts.Encoder;

    private StableDiffusionPipeline(string folder, UNet2DConditionModel unet, AutoencoderKL vae, SchedulerConfig scheduler,
        ClipPromptEncoder prompts, IReadOnlyList<string> notes) : base(folder, unet, vae, scheduler, notes)
    {
        Prompts = prompts;
    }

    public override event Action<string>? Warning
    {
        add => Prompts.Warning += value;
        remove => Prompts.Warning -= value;
    }

    /// <summary>Whether <paramref name="dir"/> is a diffusers folder of this pipeline class.</summary>
    public static bool IsFolder(string dir) => ModelIndex.Exists(dir) && ModelIndex.Load(dir).ClassName == PipelineClass;

    public static StableDiffusionPipeline Load(string folder, PipelineLoadOptions? options = null)
    {
        options ??= new PipelineLoadOptions();
        var index = ModelIndex.Load(folder);
        if (index.ClassName != PipelineClass)
            throw new DiffusionCacheException($"{folder}: a {index.ClassName}, not a {PipelineClass}");
        var notes = Ignored.Where(n => index.Components.TryGetValue(n, out var c) && c.IsPresent)
            .Select(n => $"{n} ({index.Components[n].ClassName}) is not loaded: DiffusionCache runs no {n.Replace('_', ' ')}").ToList();

        var schedulerDir = index.Require("scheduler");
        var scheduler = SchedulerConfig.FromFile(Path.Combine(schedulerDir, "scheduler_config.json"));
        var tokenizer = ClipTokenizer.Load(index.Require("tokenizer", "CLIPTokenizer", "CLIPTokenizerFast"));
        string unetDir = index.Require("unet", "UNet2DConditionModel"), vaeDir = index.Require("vae", "AutoencoderKL"),
            textDir = index.Require("text_encoder", "CLIPTextModel");

        foreach (var extra in index.Components.Values.Where(c => c.IsPresent && !Ignored.Contains(c.Name) &&
                     c.Name is not ("unet" or "vae" or "text_encoder" or "tokenizer" or "scheduler")))
            throw new DiffusionCacheException($"{folder}: component '{extra.Name}' ({extra.ClassName}) is not supported");

        var disposables = new List<IDisposable>();
        try
        {
            var unet = (UNet2DConditionModel)UNetLoader.Load(unetDir, options.Variant, options.Dtype, options.Device);
            disposables.Add(unet);
            bool upcast = AutoencoderKLConfig.FromFile(Path.Combine(vaeDir, "config.json")).ForceUpcast &&
                options.Dtype is ScalarType.Float16 or ScalarType.BFloat16;
            var vae = AutoencoderLoader.Load(vaeDir, upcast ? ScalarType.Float32 : options.Dtype, options.Device, options.Variant);
            disposables.Add(vae);
            var text = TextEncoderLoader.Load(textDir, options.Dtype, options.Device, options.Variant);
            disposables.Add(text);
            if (text.Config.HiddenSize != unet.ContextDim)
                throw new DiffusionCacheException($"{folder}: the text encoder's hidden size {text.Config.HiddenSize} differs from the U-Net's cross_attention_dim {unet.ContextDim}");
            if (vae.LatentChannels != unet.InChannels)
                throw new DiffusionCacheException($"{folder}: the VAE has {vae.LatentChannels} latent channels, the U-Net takes {unet.InChannels}");
            if (tokenizer.VocabSize > text.Config.VocabSize)
                throw new DiffusionCacheException($"{folder}: the tokenizer has {tokenizer.VocabSize} ids, the text encoder {text.Config.VocabSize}");
            return new StableDiffusionPipeline(folder, unet, vae, scheduler, new ClipPromptEncoder(tokenizer, text), notes);
        }
        catch
        {
            disposables.ForEach(d => d.Dispose());
            throw;
        }
    }

    public override void Validate(TextToImage call)
    {
        ArgumentNullException.ThrowIfNull(call);
        ValidateSize(call);
        var negatives = call.NegativePrompts ?? [];
        if (negatives.Count > 1 && negatives.Count != call.Prompts.Count)
            throw new DiffusionCacheException($"{negatives.Count} negative prompts for {call.Prompts.Count} prompts: give one, or one per prompt");
        if (call.ClipSkip < 0 || call.ClipSkip >= TextEncoder.Config.NumHiddenLayers)
            throw new DiffusionCacheException($"clip skip must be in 0..{TextEncoder.Config.NumHiddenLayers - 1}, got {call.ClipSkip}");
    }

    /// <summary>Contexts [B·n, S, D] (rows b0,b0,b1,b1,... as diffusers repeats them), the unconditional ones with
    /// guidance.</summary>
    public override SamplingRequest Request(TextToImage call)
    {
        Validate(call);
        var negatives = call.NegativePrompts ?? [];
        int height = call.Height ?? DefaultHeight, width = call.Width ?? DefaultWidth;
        using var scope = NewDisposeScope();
        var rows = call.Prompts.SelectMany(p => Enumerable.Repeat(p, call.ImagesPerPrompt)).ToList();
        var context = Prompts.Encode(rows, call.ClipSkip);
        Tensor? uncond = null;
        if (call.UsesGuidance)
        {
            // diffusers encodes negatives from the last layer even with clip_skip.
            var negativeRows = call.Prompts.SelectMany((_, i) => Enumerable.Repeat(
                negatives.Count == 0 ? "" : negatives[negatives.Count == 1 ? 0 : i], call.ImagesPerPrompt)).ToList();
            uncond = Prompts.Encode(negativeRows).DetachFromDisposeScope();
        }
        return new SamplingRequest
        {
            Steps = call.Steps,
            Batch = rows.Count,
            Height = height / VaeScaleFactor,
            Width = width / VaeScaleFactor,
            Context = context.DetachFromDisposeScope(),
            UnconditionalContext = uncond,
            GuidanceScale = call.GuidanceScale,
            Seed = call.Seed,
            InitialNoise = call.Latents,
        };
    }

    public override void Dispose()
    {
        base.Dispose();
        Prompts.Dispose();
        TextEncoder.Dispose();
    }
}
