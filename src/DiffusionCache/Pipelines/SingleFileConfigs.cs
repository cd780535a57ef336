using DiffusionCache.Formats.Checkpoints;
using DiffusionCache.Formats.Diffusers;
using DiffusionCache.Models.Config;
using DiffusionCache.Models.Loading;
using DiffusionCache.Schedulers;

namespace DiffusionCache.Pipelines;

/// <summary>
/// What a Stable Diffusion or SDXL single-file checkpoint does not carry: the component configs its key maps and
/// models are built from, the scheduler and the tokenizers. Either a diffusers folder's (<see cref="FromFolder"/>) or
/// the family's defaults (<see cref="Defaults"/>).
/// </summary>
/// <param name="UNet">The U-Net config the checkpoint's U-Net keys are mapped to and the model is built from.</param>
/// <param name="Vae">The VAE config (its scaling factor scales the latents).</param>
/// <param name="TextEncoder">The (first) CLIP text model config (a CLIPTextModel, without projection).</param>
/// <param name="Scheduler">The pipeline's scheduler config: the noise schedule and the default solver.</param>
/// <param name="TokenizerFolder">The folder's <c>tokenizer/</c>; null: the caller's or the shipped one
/// (<see cref="ShippedTokenizer"/>).</param>
/// <param name="Source">Where the configs came from, for the pipeline's notes.</param>
public sealed record SingleFileConfigs(UNet2DConditionConfig UNet, AutoencoderKLConfig Vae, ClipTextConfig TextEncoder,
    SchedulerConfig Scheduler, string? TokenizerFolder, string Source)
{
    /// <summary>SDXL's second text encoder (a CLIPTextModelWithProjection); null for SD 1.x/2.x.</summary>
    public ClipTextConfig? TextEncoder2 { get; init; }
    /// <summary>The folder's <c>tokenizer_2/</c> (SDXL); null: the shipped one.</summary>
    public string? Tokenizer2Folder { get; init; }
    /// <summary>SDXL: zero negative embeddings when no negative prompt is given (the folder's
    /// <c>force_zeros_for_empty_prompt</c>, default true as in diffusers).</summary>
    public bool ForceZerosForEmptyPrompt { get; init; } = true;

    /// <summary>The shipped tokenizers, under <c>models/</c> of the checkout.</summary>
    public const string TokenizersFolder = "models/tokenizers";

    /// <summary>
    /// The configs diffusers 0.27.2's <c>from_single_file</c> builds for the family from CompVis' inference YAMLs:
    /// SD 1.x is Stable Diffusion 1.5 (512x512, epsilon); SD 2.x is Stable Diffusion 2.1 768-v (768x768,
    /// <b>v-prediction</b>), because a safetensors file cannot tell 768-v from the 512 base (diffusers guesses from a
    /// <c>global_step</c> a safetensors file does not hold and also defaults to 768-v); give a config folder for a
    /// 512 base (epsilon) model. The VAE is SD's (scaling factor 0.18215), the text encoder CLIP ViT-L/14 (SD 1.x) or
    /// OpenCLIP ViT-H/14 without its last layer (SD 2.x). The scheduler is what <c>from_single_file</c> makes by
    /// default (<c>scheduler_type="ddim"</c>): a <c>DDIMScheduler</c> with SD's scaled-linear betas 0.00085..0.012,
    /// 1000 steps, leading spacing, steps_offset 1, no clipping, set_alpha_to_one false.
    /// SDXL is SDXL 1.0 base (1024x1024, epsilon): its U-Net, the VAE with scaling factor 0.13025, CLIP ViT-L/14 and
    /// OpenCLIP ViT-bigG/14 with its 1280-d projection, and an <c>EulerDiscreteScheduler</c> with the same betas and
    /// spacing (what <c>from_single_file</c> makes for SDXL).
    /// </summary>
    public static SingleFileConfigs Defaults(LdmFamily family) => family switch
    {
        LdmFamily.StableDiffusion1 => new(UNet2DConditionConfig.StableDiffusion15, AutoencoderKLConfig.StableDiffusion,
            ClipTextConfig.StableDiffusion1, DefaultScheduler("epsilon"), null,
            "Stable Diffusion 1.x defaults (SD 1.5: 512x512, epsilon, DDIM)"),
        LdmFamily.StableDiffusion2 => new(UNet2DConditionConfig.StableDiffusion21, AutoencoderKLConfig.StableDiffusion with { SampleSize = 768 },
            ClipTextConfig.StableDiffusion2, DefaultScheduler("v_prediction"), null,
            "Stable Diffusion 2.x defaults (SD 2.1 768-v: 768x768, v-prediction, DDIM; give a config folder for a 512 epsilon base model)"),
        LdmFamily.StableDiffusionXL => new(UNet2DConditionConfig.StableDiffusionXL,
            AutoencoderKLConfig.StableDiffusion with { SampleSize = 1024, ScalingFactor = 0.13025 },
            ClipTextConfig.StableDiffusion1, DefaultScheduler("epsilon", "EulerDiscreteScheduler"), null,
            "SDXL defaults (SDXL 1.0 base: 1024x1024, epsilon, Euler)")
        {
            TextEncoder2 = ClipTextConfig.StableDiffusionXL2,
        },
        _ => throw new ArgumentOutOfRangeException(nameof(family), family, "unknown family"),
    };

    /// <summary>diffusers 0.27.2's <c>SCHEDULER_DEFAULT_CONFIG</c> with <c>create_scheduler_from_ldm</c>'s SD
    /// settings, read as its default <c>DDIMScheduler.from_config</c> (SDXL: <c>EulerDiscreteScheduler</c>) reads it.</summary>
    private static SchedulerConfig DefaultScheduler(string predictionType, string className = "DDIMScheduler") => SchedulerConfig.FromJson($$"""
        {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "interpolation_type": "linear",
         "num_train_timesteps": 1000, "prediction_type": "{{predictionType}}", "sample_max_value": 1.0,
         "set_alpha_to_one": false, "skip_prk_steps": true, "steps_offset": 1, "timestep_spacing": "leading",
         "clip_sample": false}
        """, className);

    /// <summary>The configs of a diffusers folder of the checkpoint's family: <c>unet/config.json</c>,
    /// <c>vae/config.json</c>, <c>text_encoder/config.json</c> (a CLIPTextModel), for SDXL also
    /// <c>text_encoder_2/config.json</c> (a CLIPTextModelWithProjection), and <c>scheduler/scheduler_config.json</c>,
    /// all required, and its <c>tokenizer/</c> (<c>tokenizer_2/</c>) when there is one. No weights are read.</summary>
    /// <param name="folder">A diffusers folder (its <c>model_index.json</c>, when present, must name the family's
    /// pipeline).</param>
    /// <param name="family">The family of the checkpoint the configs are for.</param>
    public static SingleFileConfigs FromFolder(string folder, LdmFamily family = LdmFamily.StableDiffusion1)
    {
        ArgumentNullException.ThrowIfNull(folder);
        if (!Directory.Exists(folder)) throw new DiffusionCacheException($"{folder}: config folder not found");
        bool xl = family == LdmFamily.StableDiffusionXL;
        string pipeline = xl ? StableDiffusionXLPipeline.PipelineClass : StableDiffusionPipeline.PipelineClass;
        var index = ModelIndex.Exists(folder) ? ModelIndex.Load(folder) : null;
        if (index is not null && index.ClassName != pipeline)
            throw new DiffusionCacheException($"{folder}: a {index.ClassName} folder; {LdmCheckpoint.Name(family)} single files need the configs of a {pipeline}");
        string[] needed = xl ? ["unet", "vae", "text_encoder", "text_encoder_2", "scheduler"] : ["unet", "vae", "text_encoder", "scheduler"];
        string Require(string component, string file)
        {
            string path = Path.Combine(folder, component, file);
            return File.Exists(path) ? path
                : throw new DiffusionCacheException($"{folder}: {component}/{file} not found (a config folder needs the {string.Join(", ", needed)} configs)");
        }
        string unet = Require("unet", "config.json"), vae = Require("vae", "config.json"), text = Require("text_encoder", "config.json"),
            scheduler = Require("scheduler", "scheduler_config.json");
        var (textConfig, projection) = TextEncoderLoader.ReadConfig(Path.GetDirectoryName(text)!);
        if (projection)
            throw new DiffusionCacheException($"{text}: a {TextEncoderLoader.TextModelWithProjection}; {LdmCheckpoint.Name(family)}'s {(xl ? "first " : "")}text encoder is a {TextEncoderLoader.TextModel}");
        ClipTextConfig? text2Config = null;
        if (xl)
        {
            string text2 = Require("text_encoder_2", "config.json");
            (text2Config, projection) = TextEncoderLoader.ReadConfig(Path.GetDirectoryName(text2)!);
            if (!projection)
                throw new DiffusionCacheException($"{text2}: a {TextEncoderLoader.TextModel}; SDXL's second text encoder is a {TextEncoderLoader.TextModelWithProjection}");
        }
        string? Optional(string name) => Directory.Exists(Path.Combine(folder, name)) ? Path.Combine(folder, name) : null;
        return new(UNet2DConditionConfig.FromFile(unet), AutoencoderKLConfig.FromFile(vae), textConfig, SchedulerConfig.FromFile(scheduler),
            Optional("tokenizer"), $"the configs of {folder}")
        {
            TextEncoder2 = text2Config,
            Tokenizer2Folder = xl ? Optional("tokenizer_2") : null,
            ForceZerosForEmptyPrompt = index?.Bool("force_zeros_for_empty_prompt", true) ?? true,
        };
    }

    /// <summary>The tokenizer shipped for the family's text encoder <paramref name="encoder"/> (1 or 2):
    /// <c>models/tokenizers/clip-vit-large-patch14</c> for SD 1.x and SDXL's first encoder, <c>clip-sd2</c> (the same
    /// vocabulary, padding with "!") for SD 2.x and SDXL's second; found above the running program as the CLI finds
    /// the embedded model.</summary>
    public static string ShippedTokenizer(LdmFamily family, int encoder = 1)
    {
        string name = family == LdmFamily.StableDiffusion2 || encoder == 2 ? "clip-sd2" : "clip-vit-large-patch14";
        string relative = Path.Combine(TokenizersFolder, name);
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, relative);
            if (File.Exists(Path.Combine(candidate, "vocab.json"))) return candidate;
        }
        throw new DiffusionCacheException($"a single-file checkpoint carries no tokenizer and the shipped one ({relative}) was not found above " +
            $"{AppContext.BaseDirectory}; give a config folder with a tokenizer/ or a tokenizer folder");
    }
}
