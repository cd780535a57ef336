using DiffusionCache.Caching;
using DiffusionCache.Formats.Checkpoints;
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
/// <param name="Dtype">The compute type the weights are converted to (float32, float16, bfloat16).</param>
/// <param name="Device">Where the components are placed; null: the CPU.</param>
/// <param name="Variant">The weights variant of a diffusers folder (<c>diffusion_pytorch_model.fp16.safetensors</c>
/// for "fp16"); null: the plain float32 files, or the fp16 ones where only those exist. Refused for single-file
/// checkpoints.</param>
public sealed record PipelineLoadOptions(ScalarType Dtype = ScalarType.Float32, Device? Device = null, string? Variant = null);

/// <summary>
/// Stable Diffusion 1.x/2.x text-to-image from a diffusers folder (<c>model_index.json</c> with <c>unet</c>,
/// <c>vae</c>, <c>text_encoder</c>, <c>tokenizer</c>, <c>scheduler</c>), as diffusers 0.27.2's
/// <c>StableDiffusionPipeline</c>: prompts become CLIP contexts (<see cref="ClipPromptEncoder"/>), sampling goes
/// through the one loop with any solver and cache policy, latents are decoded by the VAE. Safety checker, feature
/// extractor and image encoder entries are not loaded (<see cref="TextToImagePipeline.Notes"/> says so).
/// <see cref="LoadSingleFile"/> reads the same pipeline from one original-layout checkpoint file.
/// </summary>
public sealed class StableDiffusionPipeline : TextToImagePipeline
{
    /// <summary>The <c>_class_name</c> of the <c>model_index.json</c> this pipeline loads.</summary>
    public const string PipelineClass = "StableDiffusionPipeline";

    /// <summary>Prompt encoding: the tokenizer, the text encoder and a cache of recent prompt embeddings.</summary>
    public ClipPromptEncoder Prompts { get; }
    /// <summary>The CLIP tokenizer (<c>tokenizer</c>).</summary>
    public ClipTokenizer Tokenizer => Prompts.Tokenizer;
    /// <summary>The CLIP text encoder (<c>text_encoder</c>); owned by the pipeline and disposed with it.</summary>
    public ClipTextModel TextEncoder => Prompts.Encoder;

    private StableDiffusionPipeline(string folder, UNet2DConditionModel unet, AutoencoderKL vae, SchedulerConfig scheduler,
        ClipPromptEncoder prompts, IReadOnlyList<string> notes) : base(folder, unet, vae, scheduler, notes)
    {
        Prompts = prompts;
    }

    /// <inheritdoc />
    public override event Action<string>? Warning
    {
        add => Prompts.Warning += value;
        remove => Prompts.Warning -= value;
    }

    /// <summary>Whether <paramref name="dir"/> is a diffusers folder of this pipeline class.</summary>
    public static bool IsFolder(string dir) => ModelIndex.Exists(dir) && ModelIndex.Load(dir).ClassName == PipelineClass;

    /// <summary>Loads a diffusers Stable Diffusion 1.x/2.x folder: its U-Net, VAE, text encoder, tokenizer and
    /// scheduler config. Components already loaded are disposed if a later one fails.</summary>
    /// <param name="folder">The folder, with <c>model_index.json</c> naming <see cref="PipelineClass"/>.</param>
    /// <param name="options">Compute type, device and weights variant; null: float32 on the CPU.</param>
    /// <exception cref="DiffusionCacheException">Another pipeline class, a missing, unsupported or unexpected
    /// component, components that do not fit together, or weights that do not match their configs.</exception>
    public static StableDiffusionPipeline Load(string folder, PipelineLoadOptions? options = null)
    {
        options ??= new PipelineLoadOptions();
        var index = ModelIndex.Load(folder);
        if (index.ClassName != PipelineClass)
            throw new DiffusionCacheException($"{folder}: a {index.ClassName}, not a {PipelineClass}");
        var schedulerDir = index.Require("scheduler");
        var scheduler = SchedulerConfig.FromFile(Path.Combine(schedulerDir, "scheduler_config.json"));
        var tokenizer = ClipTokenizer.Load(index.Require("tokenizer", "CLIPTokenizer", "CLIPTokenizerFast"));
        string unetDir = index.Require("unet", "UNet2DConditionModel"), vaeDir = index.Require("vae", "AutoencoderKL"),
            textDir = index.Require("text_encoder", "CLIPTextModel");

        var notes = CheckComponents(index, "unet", "vae", "text_encoder", "tokenizer", "scheduler");

        return Assemble(folder, scheduler, tokenizer, notes,
            () => (UNet2DConditionModel)UNetLoader.Load(unetDir, options.Variant, options.Dtype, options.Device),
            () => AutoencoderLoader.Load(vaeDir, VaeDtype(AutoencoderKLConfig.FromFile(Path.Combine(vaeDir, "config.json")), options),
                options.Device, options.Variant),
            () => TextEncoderLoader.Load(textDir, options.Dtype, options.Device, options.Variant));
    }

    /// <summary>
    /// Stable Diffusion 1.x/2.x from one single-file checkpoint in the original CompVis/LDM layout (the
    /// <c>.safetensors</c> files A1111 and ComfyUI load; <see cref="LdmCheckpoint"/>): the family is told by the text
    /// encoder's keys, each component is read through a key map in front of the same strict loaders as a folder,
    /// streaming tensor by tensor. The configs, scheduler and tokenizer a single file lacks come from
    /// <paramref name="configFolder"/> (a diffusers Stable Diffusion folder: its unet, vae, text_encoder and scheduler
    /// configs and its tokenizer; no weights are read), or else from the family's defaults
    /// (<see cref="SingleFileConfigs.Defaults"/>: SD 1.5; for SD 2.x the 768x768 <b>v-prediction</b> model, SD 2.1
    /// 768-v, since a file cannot tell it from the 512 epsilon base: give a config folder for that one; scheduler DDIM
    /// with SD's betas, as diffusers' <c>from_single_file</c>).
    /// </summary>
    /// <param name="file">The <c>.safetensors</c> checkpoint (pickled <c>.ckpt</c>/<c>.pt</c> are refused).</param>
    /// <param name="configFolder">A diffusers Stable Diffusion folder to take the configs, scheduler and tokenizer
    /// from; null: the family's defaults.</param>
    /// <param name="options">Compute type and device (no weights variant); null: float32 on the CPU.</param>
    /// <param name="tokenizerFolder">A tokenizer folder for when the config folder has none; default: the one shipped
    /// in <c>models/tokenizers/</c> for the family (<see cref="SingleFileConfigs.ShippedTokenizer"/>).</param>
    /// <exception cref="LdmCheckpointException">An SDXL, refiner or unknown checkpoint, or keys that belong nowhere.</exception>
    /// <exception cref="Formats.Safetensors.SafetensorsException">A malformed or truncated file.</exception>
    /// <exception cref="CheckpointMismatchException">Tensors missing or of the wrong shape for the configs (named with
    /// their file keys).</exception>
    public static StableDiffusionPipeline LoadSingleFile(string file, string? configFolder = null, PipelineLoadOptions? options = null,
        string? tokenizerFolder = null)
    {
        options ??= new PipelineLoadOptions();
        using var checkpoint = SingleFile.Open(file, options);
        return FromCheckpoint(checkpoint, configFolder, options, tokenizerFolder);
    }

    /// <summary><see cref="LoadSingleFile(string, string?, PipelineLoadOptions?, string?)"/> from a checkpoint already
    /// open (the caller disposes it; the models hold no reference to the file).</summary>
    internal static StableDiffusionPipeline FromCheckpoint(LdmCheckpoint checkpoint, string? configFolder, PipelineLoadOptions options,
        string? tokenizerFolder = null)
    {
        string file = checkpoint.FilePath;
        if (checkpoint.Family == LdmFamily.StableDiffusionXL)
            throw new LdmCheckpointException(file, "an SDXL checkpoint, not a Stable Diffusion 1.x/2.x one (load it as SDXL)");
        var configs = configFolder is null ? SingleFileConfigs.Defaults(checkpoint.Family) : SingleFileConfigs.FromFolder(configFolder, checkpoint.Family);
        var tokenizer = ClipTokenizer.Load(configs.TokenizerFolder ?? tokenizerFolder ?? SingleFileConfigs.ShippedTokenizer(checkpoint.Family));
        // The maps first: a key without a place fails here, before any model is built.
        var unetSource = checkpoint.UNet(configs.UNet);
        var vaeSource = checkpoint.Vae(configs.Vae);
        var textSource = checkpoint.TextEncoder(configs.TextEncoder);
        var notes = SingleFile.Notes(checkpoint, configs);

        return Assemble(file, configs.Scheduler, tokenizer, notes,
            () => ComponentLoader.LoadWeights(new UNet2DConditionModel(configs.UNet), unetSource, options.Dtype, options.Device),
            () => ComponentLoader.LoadWeights(new AutoencoderKL(configs.Vae), vaeSource, VaeDtype(configs.Vae, options), options.Device),
            () => ComponentLoader.LoadWeights(new ClipTextModel(configs.TextEncoder), textSource, options.Dtype, options.Device,
                TextEncoderLoader.IsWeight));
    }

    /// <summary>What both ways of loading share: load the components in order, check that they fit together, and
    /// dispose what was loaded if anything fails.</summary>
    private static StableDiffusionPipeline Assemble(string origin, SchedulerConfig scheduler, ClipTokenizer tokenizer, IReadOnlyList<string> notes,
        Func<UNet2DConditionModel> loadUNet, Func<AutoencoderKL> loadVae, Func<ClipTextModel> loadText)
    {
        using var load = new ComponentLoad();
        var unet = load.Add(loadUNet());
        var vae = load.Add(loadVae());
        var text = load.Add(loadText());
        if (text.Config.HiddenSize != unet.ContextDim)
            throw new DiffusionCacheException($"{origin}: the text encoder's hidden size {text.Config.HiddenSize} differs from the U-Net's cross_attention_dim {unet.ContextDim}");
        CheckFit(origin, unet, vae, tokenizer, text);
        load.Keep();
        return new StableDiffusionPipeline(origin, unet, vae, scheduler, new ClipPromptEncoder(tokenizer, text), notes);
    }

    /// <summary>Checks <paramref name="call"/> before any work: sizes (positive multiples of 8 and of the VAE
    /// factor), images per prompt, at least one prompt, negative prompts (none, one, or one per prompt), and a
    /// clip skip below the text encoder's layer count.</summary>
    /// <exception cref="DiffusionCacheException">The first problem found.</exception>
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

    /// <summary>Disposes the U-Net, the VAE, the text encoder and the cached prompt embeddings.</summary>
    public override void Dispose()
    {
        base.Dispose();
        Prompts.Dispose();
        TextEncoder.Dispose();
    }
}
