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

/// <summary>What SDXL's prompt encoding produces (diffusers' <c>encode_prompt</c> plus the time ids), rows already
/// repeated per image; the negative parts are null without guidance. The caller owns the tensors.</summary>
/// <param name="PromptEmbeds">The context [B·n, S, D1 + D2]: both encoders' penultimate hidden states, side by
/// side.</param>
/// <param name="PooledPromptEmbeds">The second encoder's projected pooled output [B·n, P].</param>
/// <param name="NegativePromptEmbeds">The negative prompts' context, like <paramref name="PromptEmbeds"/> (zeros with
/// <c>force_zeros_for_empty_prompt</c> and no negative prompt); null without guidance.</param>
/// <param name="NegativePooledPromptEmbeds">The negative prompts' pooled output; null without guidance.</param>
/// <param name="AddTimeIds">The size and crop ids [1, 6], float32
/// (<see cref="StableDiffusionXLPipeline.TimeIds"/>).</param>
/// <param name="NegativeAddTimeIds">The negative batch's ids [1, 6]: a copy of <paramref name="AddTimeIds"/> unless
/// negative sizes are given.</param>
public sealed record SdxlConditioning(Tensor PromptEmbeds, Tensor PooledPromptEmbeds, Tensor? NegativePromptEmbeds,
    Tensor? NegativePooledPromptEmbeds, Tensor AddTimeIds, Tensor NegativeAddTimeIds) : IDisposable
{
    /// <summary>Disposes every tensor of the conditioning.</summary>
    public void Dispose()
    {
        foreach (var t in new[] { PromptEmbeds, PooledPromptEmbeds, NegativePromptEmbeds, NegativePooledPromptEmbeds, AddTimeIds, NegativeAddTimeIds })
            t?.Dispose();
    }
}

/// <summary>
/// SDXL text-to-image from a diffusers folder (<c>unet</c>, <c>vae</c>, <c>text_encoder</c> + <c>tokenizer</c>,
/// <c>text_encoder_2</c> + <c>tokenizer_2</c>, <c>scheduler</c>) or a single-file checkpoint
/// (<see cref="LoadSingleFile"/>), as diffusers 0.27.2's
/// <c>StableDiffusionXLPipeline</c>: the penultimate hidden states of both encoders side by side as the context, the
/// second encoder's projected pooled output and six size/crop ids as the U-Net's added conditioning; sampling through
/// the one loop with any solver and cache policy.
/// </summary>
public sealed class StableDiffusionXLPipeline : TextToImagePipeline
{
    /// <summary>The <c>_class_name</c> of the <c>model_index.json</c> this pipeline loads.</summary>
    public const string PipelineClass = "StableDiffusionXLPipeline";

    /// <summary>The first text encoder (<c>text_encoder</c> + <c>tokenizer</c>, CLIP ViT-L) with its prompt cache;
    /// the pipeline owns the encoder.</summary>
    public ClipPromptEncoder Prompts1 { get; }
    /// <summary>The second text encoder (<c>text_encoder_2</c> + <c>tokenizer_2</c>, OpenCLIP ViT-bigG with
    /// projection), which also gives the pooled embeddings; the pipeline owns the encoder.</summary>
    public ClipPromptEncoder Prompts2 { get; }
    /// <summary>Zero negative embeddings when no negative prompt is given (the folder's <c>force_zeros_for_empty_prompt</c>).</summary>
    public bool ForceZerosForEmptyPrompt { get; set; }

    private StableDiffusionXLPipeline(string folder, UNet2DConditionModel unet, AutoencoderKL vae, SchedulerConfig scheduler,
        ClipPromptEncoder prompts1, ClipPromptEncoder prompts2, IReadOnlyList<string> notes) : base(folder, unet, vae, scheduler, notes)
    {
        Prompts1 = prompts1;
        Prompts2 = prompts2;
    }

    /// <inheritdoc />
    public override event Action<string>? Warning
    {
        add { Prompts1.Warning += value; Prompts2.Warning += value; }
        remove { Prompts1.Warning -= value; Prompts2.Warning -= value; }
    }

    /// <summary>Whether <paramref name="dir"/> is a diffusers folder of this pipeline class.</summary>
    public static bool IsFolder(string dir) => ModelIndex.Exists(dir) && ModelIndex.Load(dir).ClassName == PipelineClass;

    /// <summary>Loads a diffusers SDXL base folder: U-Net, VAE, both text encoders and tokenizers, scheduler config
    /// and <c>force_zeros_for_empty_prompt</c> (default true). Components already loaded are disposed if a later one
    /// fails.</summary>
    /// <param name="folder">The folder, with <c>model_index.json</c> naming <see cref="PipelineClass"/>.</param>
    /// <param name="options">Compute type, device and weights variant; null: float32 on the CPU.</param>
    /// <exception cref="DiffusionCacheException">Another pipeline class (a refiner/img2img one included), a missing,
    /// unsupported or unexpected component, components that do not fit together, or weights that do not match their
    /// configs.</exception>
    public static StableDiffusionXLPipeline Load(string folder, PipelineLoadOptions? options = null)
    {
        options ??= new PipelineLoadOptions();
        var index = ModelIndex.Load(folder);
        if (index.ClassName != PipelineClass)
            throw new DiffusionCacheException(index.ClassName == "StableDiffusionXLImg2ImgPipeline"
                ? $"{folder}: an SDXL refiner/img2img pipeline, which is not supported yet"
                : $"{folder}: a {index.ClassName}, not a {PipelineClass}");
        var scheduler = SchedulerConfig.FromFile(Path.Combine(index.Require("scheduler"), "scheduler_config.json"));
        var tokenizer1 = ClipTokenizer.Load(index.Require("tokenizer", "CLIPTokenizer", "CLIPTokenizerFast"));
        var tokenizer2 = ClipTokenizer.Load(index.Require("tokenizer_2", "CLIPTokenizer", "CLIPTokenizerFast"));
        string unetDir = index.Require("unet", "UNet2DConditionModel"), vaeDir = index.Require("vae", "AutoencoderKL"),
            text1Dir = index.Require("text_encoder", "CLIPTextModel"),
            text2Dir = index.Require("text_encoder_2", "CLIPTextModelWithProjection");

        var notes = CheckComponents(index, "unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler");
        return Assemble(folder, scheduler, tokenizer1, tokenizer2, notes, index.Bool("force_zeros_for_empty_prompt", true),
            () => (UNet2DConditionModel)UNetLoader.Load(unetDir, options.Variant, options.Dtype, options.Device),
            () => AutoencoderLoader.Load(vaeDir, VaeDtype(AutoencoderKLConfig.FromFile(Path.Combine(vaeDir, "config.json")), options),
                options.Device, options.Variant),
            () => TextEncoderLoader.Load(text1Dir, options.Dtype, options.Device, options.Variant),
            () => TextEncoderLoader.Load(text2Dir, options.Dtype, options.Device, options.Variant));
    }

    /// <summary>
    /// SDXL base from one single-file checkpoint in the original SGM layout (the <c>.safetensors</c> files A1111 and
    /// ComfyUI load; <see cref="LdmCheckpoint"/>): U-Net, VAE and both text encoders (<c>conditioner.embedders.0</c>,
    /// CLIP ViT-L/14; <c>.1</c>, OpenCLIP ViT-bigG/14 with its projection) read through key maps in front of the same
    /// strict loaders as a folder, streaming tensor by tensor. The configs, scheduler and tokenizers a single file
    /// lacks come from <paramref name="configFolder"/> (a diffusers SDXL folder; no weights are read), or else from
    /// SDXL 1.0 base's (<see cref="SingleFileConfigs.Defaults"/>: 1024x1024, Euler, the shipped CLIP tokenizers).
    /// </summary>
    /// <param name="file">The <c>.safetensors</c> checkpoint (pickled <c>.ckpt</c>/<c>.pt</c> are refused).</param>
    /// <param name="configFolder">A diffusers SDXL folder to take the configs, scheduler and tokenizers from; null:
    /// SDXL base's.</param>
    /// <param name="options">Compute type and device (no weights variant); null: float32 on the CPU.</param>
    /// <exception cref="LdmCheckpointException">Not an SDXL base checkpoint, or keys that belong nowhere.</exception>
    /// <exception cref="CheckpointMismatchException">Tensors missing or of the wrong shape for the configs (named with
    /// their file keys).</exception>
    public static StableDiffusionXLPipeline LoadSingleFile(string file, string? configFolder = null, PipelineLoadOptions? options = null)
    {
        options ??= new PipelineLoadOptions();
        using var checkpoint = SingleFile.Open(file, options);
        return FromCheckpoint(checkpoint, configFolder, options);
    }

    /// <summary><see cref="LoadSingleFile(string, string?, PipelineLoadOptions?)"/> from a checkpoint already open (the
    /// caller disposes it; the models hold no reference to the file).</summary>
    internal static StableDiffusionXLPipeline FromCheckpoint(LdmCheckpoint checkpoint, string? configFolder, PipelineLoadOptions options)
    {
        string file = checkpoint.FilePath;
        if (checkpoint.Family != LdmFamily.StableDiffusionXL)
            throw new LdmCheckpointException(file, $"a {LdmCheckpoint.Name(checkpoint.Family)} checkpoint, not an SDXL one (load it as Stable Diffusion)");
        var configs = configFolder is null ? SingleFileConfigs.Defaults(checkpoint.Family) : SingleFileConfigs.FromFolder(configFolder, checkpoint.Family);
        var tokenizer1 = ClipTokenizer.Load(configs.TokenizerFolder ?? SingleFileConfigs.ShippedTokenizer(checkpoint.Family, 1));
        var tokenizer2 = ClipTokenizer.Load(configs.Tokenizer2Folder ?? SingleFileConfigs.ShippedTokenizer(checkpoint.Family, 2));
        // The maps first: a key without a place fails here, before any model is built.
        var unetSource = checkpoint.UNet(configs.UNet);
        var vaeSource = checkpoint.Vae(configs.Vae);
        var text1Source = checkpoint.TextEncoder(configs.TextEncoder);
        var text2Source = checkpoint.TextEncoder2(configs.TextEncoder2!);
        var notes = SingleFile.Notes(checkpoint, configs);
        return Assemble(file, configs.Scheduler, tokenizer1, tokenizer2, notes, configs.ForceZerosForEmptyPrompt,
            () => ComponentLoader.LoadWeights(new UNet2DConditionModel(configs.UNet), unetSource, options.Dtype, options.Device),
            () => ComponentLoader.LoadWeights(new AutoencoderKL(configs.Vae), vaeSource, VaeDtype(configs.Vae, options), options.Device),
            () => ComponentLoader.LoadWeights(new ClipTextModel(configs.TextEncoder), text1Source, options.Dtype, options.Device, TextEncoderLoader.IsWeight),
            () => ComponentLoader.LoadWeights(new ClipTextModel(configs.TextEncoder2!, withProjection: true), text2Source, options.Dtype, options.Device,
                TextEncoderLoader.IsWeight));
    }

    /// <summary>What both ways of loading share: load the components in order, check that they fit together, and
    /// dispose what was loaded if anything fails.</summary>
    private static StableDiffusionXLPipeline Assemble(string origin, SchedulerConfig scheduler, ClipTokenizer tokenizer1, ClipTokenizer tokenizer2,
        IReadOnlyList<string> notes, bool forceZeros, Func<UNet2DConditionModel> loadUNet, Func<AutoencoderKL> loadVae,
        Func<ClipTextModel> loadText1, Func<ClipTextModel> loadText2)
    {
        using var load = new ComponentLoad();
        var unet = load.Add(loadUNet());
        if (unet.PooledTextDim is null)
            throw new DiffusionCacheException($"{origin}: an SDXL U-Net needs addition_embed_type \"text_time\"");
        var vae = load.Add(loadVae());
        var text1 = load.Add(loadText1());
        var text2 = load.Add(loadText2());
        if (text1.Config.HiddenSize + text2.Config.HiddenSize != unet.ContextDim)
            throw new DiffusionCacheException($"{origin}: the text encoders' widths {text1.Config.HiddenSize} + {text2.Config.HiddenSize} differ from the U-Net's cross_attention_dim {unet.ContextDim}");
        if (text2.Config.ProjectionDim != unet.PooledTextDim)
            throw new DiffusionCacheException($"{origin}: text_encoder_2's projection_dim {text2.Config.ProjectionDim} differs from the U-Net's pooled width {unet.PooledTextDim} (projection_class_embeddings_input_dim - 6 x addition_time_embed_dim)");
        CheckFit(origin, unet, vae, tokenizer1, text1);
        CheckFit(origin, unet, vae, tokenizer2, text2);
        load.Keep();
        return new StableDiffusionXLPipeline(origin, unet, vae, scheduler, new ClipPromptEncoder(tokenizer1, text1),
            new ClipPromptEncoder(tokenizer2, text2), notes)
        {
            ForceZerosForEmptyPrompt = forceZeros,
        };
    }

    /// <summary>Checks <paramref name="call"/> before any work: sizes (positive multiples of 8 and of the VAE
    /// factor), images per prompt, at least one prompt, second and negative prompt lists of one or one per prompt,
    /// and a clip skip below both encoders' layer counts.</summary>
    /// <exception cref="DiffusionCacheException">The first problem found.</exception>
    public override void Validate(TextToImage call)
    {
        ArgumentNullException.ThrowIfNull(call);
        ValidateSize(call);
        int b = call.Prompts.Count;
        foreach (var (list, what) in new[] { (call.Prompts2, "second prompts"), (call.NegativePrompts, "negative prompts"), (call.NegativePrompts2, "second negative prompts") })
            if (list is not null && list.Count != 1 && list.Count != b)
                throw new DiffusionCacheException($"{list.Count} {what} for {b} prompts: give one, or one per prompt");
        int layers = Math.Min(Prompts1.Encoder.Config.NumHiddenLayers, Prompts2.Encoder.Config.NumHiddenLayers);
        if (call.ClipSkip < 0 || call.ClipSkip >= layers)
            throw new DiffusionCacheException($"clip skip must be in 0..{layers - 1}, got {call.ClipSkip}");
    }

    /// <summary>diffusers 0.27.2's <c>encode_prompt</c> and <c>_get_add_time_ids</c> for <paramref name="call"/>.</summary>
    public SdxlConditioning Encode(TextToImage call)
    {
        Validate(call);
        using var scope = NewDisposeScope();
        int b = call.Prompts.Count, n = call.ImagesPerPrompt;
        static IReadOnlyList<string> Each(IReadOnlyList<string>? list, IReadOnlyList<string> fallback, int count)
        {
            var rows = list ?? fallback;
            return rows.Count == count ? rows : Enumerable.Repeat(rows[0], count).ToArray();
        }
        IReadOnlyList<string> Repeat(IReadOnlyList<string> rows) => rows.SelectMany(r => Enumerable.Repeat(r, n)).ToArray();

        var prompts2 = Each(call.Prompts2, call.Prompts, b);
        var (embeds, pooled) = EncodePair(Repeat(call.Prompts), Repeat(prompts2), call.ClipSkip);
        Tensor? negEmbeds = null, negPooled = null;
        if (call.UsesGuidance)
        {
            if (call.NegativePrompts is null && ForceZerosForEmptyPrompt)
                (negEmbeds, negPooled) = (zeros_like(embeds), zeros_like(pooled));
            else
            {
                var negatives = Each(call.NegativePrompts, [""], b);
                // diffusers: negative_prompt_2 = negative_prompt_2 or negative_prompt; negatives ignore clip skip.
                (negEmbeds, negPooled) = EncodePair(Repeat(negatives), Repeat(Each(call.NegativePrompts2, negatives, b)), 0);
            }
        }
        int height = call.Height ?? DefaultHeight, width = call.Width ?? DefaultWidth;
        var ids = TimeIds(call.OriginalSize ?? (height, width), call.CropsTopLeft ?? (0, 0), call.TargetSize ?? (height, width));
        var negIds = call.NegativeOriginalSize is { } no && call.NegativeTargetSize is { } nt
            ? TimeIds(no, call.NegativeCropsTopLeft ?? (0, 0), nt) : ids.clone();
        return new SdxlConditioning(embeds.MoveToOuterDisposeScope(), pooled.MoveToOuterDisposeScope(), negEmbeds?.MoveToOuterDisposeScope(),
            negPooled?.MoveToOuterDisposeScope(), ids.MoveToOuterDisposeScope(), negIds.MoveToOuterDisposeScope());
    }

    private (Tensor Embeds, Tensor Pooled) EncodePair(IReadOnlyList<string> texts1, IReadOnlyList<string> texts2, int clipSkip)
    {
        var (h1, _) = Prompts1.EncodeSdxl(texts1, clipSkip);
        var (h2, pooled) = Prompts2.EncodeSdxl(texts2, clipSkip);
        return (cat([h1, h2.to(h1.dtype)], -1), pooled);
    }

    /// <summary><c>_get_add_time_ids</c>: [[original h, w, crop top, left, target h, w]], float32.</summary>
    public static Tensor TimeIds((int Height, int Width) original, (int Top, int Left) crop, (int Height, int Width) target) =>
        tensor(new float[] { original.Height, original.Width, crop.Top, crop.Left, target.Height, target.Width }).unsqueeze(0);

    /// <summary>The sampling request: contexts and pooled embeddings [B·n, ...], and the time ids as diffusers feeds
    /// them — <c>cat([negative, positive]).repeat(B·n, 1)</c>, rows alternating, split into the loop's
    /// unconditional and conditional halves (which pairs rows oddly for B·n ≥ 2 with separate negative time ids: that
    /// is diffusers 0.27.2's behaviour, kept).</summary>
    public override SamplingRequest Request(TextToImage call)
    {
        using var c = Encode(call);
        using var scope = NewDisposeScope();
        int rows = (int)c.PromptEmbeds.shape[0];
        int height = call.Height ?? DefaultHeight, width = call.Width ?? DefaultWidth;
        Tensor? uncondIds = null, condIds;
        if (call.UsesGuidance)
        {
            var all = cat([c.NegativeAddTimeIds, c.AddTimeIds]).repeat(rows, 1);
            uncondIds = all[..rows].clone().DetachFromDisposeScope();
            condIds = all[rows..].clone().DetachFromDisposeScope();
        }
        else condIds = c.AddTimeIds.repeat(rows, 1).DetachFromDisposeScope();
        return new SamplingRequest
        {
            Steps = call.Steps,
            Batch = rows,
            Height = height / VaeScaleFactor,
            Width = width / VaeScaleFactor,
            Context = c.PromptEmbeds.clone().DetachFromDisposeScope(),
            UnconditionalContext = c.NegativePromptEmbeds?.clone().DetachFromDisposeScope(),
            TextEmbeds = c.PooledPromptEmbeds.clone().DetachFromDisposeScope(),
            UnconditionalTextEmbeds = c.NegativePooledPromptEmbeds?.clone().DetachFromDisposeScope(),
            TimeIds = condIds,
            UnconditionalTimeIds = uncondIds,
            GuidanceScale = call.GuidanceScale,
            Seed = call.Seed,
            InitialNoise = call.Latents,
        };
    }

    /// <summary>Disposes the U-Net, the VAE, both text encoders and the cached prompt embeddings.</summary>
    public override void Dispose()
    {
        base.Dispose();
        Prompts1.Dispose();
        Prompts2.Dispose();
        Prompts1.Encoder.Dispose();
        Prompts2.Encoder.Dispose();
    }
}
