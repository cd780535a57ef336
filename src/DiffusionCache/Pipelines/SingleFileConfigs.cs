using DiffusionCache.Formats.Checkpoints;
using DiffusionCache.Formats.Diffusers;
using DiffusionCache.Models.Config;
using DiffusionCache.Models.Loading;
using DiffusionCache.Schedulers;

namespace DiffusionCache.Pipelines;

/// <summary>
/// What a Stable Diffusion single-file checkpoint does not carry: the component configs its key maps and models are
/// built from, the scheduler and the tokenizer. Either a diffusers folder's (<see cref="FromFolder"/>) or the family's
/// defaults (<see cref="Defaults"/>).
/// </summary>
/// <param name="UNet">The U-Net config the checkpoint's U-Net keys are mapped to and the model is built from.</param>
/// <param name="Vae">The VAE config (its scaling factor scales the latents).</param>
/// <param name="TextEncoder">The CLIP text model config (a CLIPTextModel, without projection).</param>
/// <param name="Scheduler">The pipeline's scheduler config: the noise schedule and the default solver.</param>
/// <param name="TokenizerFolder">The folder's <c>tokenizer/</c>; null: the caller's or the shipped one
/// (<see cref="ShippedTokenizer"/>).</param>
/// <param name="Source">Where the configs came from, for the pipeline's notes.</param>
public sealed record SingleFileConfigs(UNet2DConditionConfig UNet, AutoencoderKLConfig Vae, ClipTextConfig TextEncoder,
    SchedulerConfig Scheduler, string? TokenizerFolder, string Source)
{
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
    /// </summary>
    public static SingleFileConfigs Defaults(LdmFamily family) => family switch
    {
        LdmFamily.StableDiffusion1 => new(UNet2DConditionConfig.StableDiffusion15, AutoencoderKLConfig.StableDiffusion,
            ClipTextConfig.StableDiffusion1, DefaultScheduler("epsilon"), null,
            "Stable Diffusion 1.x defaults (SD 1.5: 512x512, epsilon, DDIM)"),
        LdmFamily.StableDiffusion2 => new(UNet2DConditionConfig.StableDiffusion21, AutoencoderKLConfig.StableDiffusion with { SampleSize = 768 },
            ClipTextConfig.StableDiffusion2, DefaultScheduler("v_prediction"), null,
            "Stable Diffusion 2.x defaults (SD 2.1 768-v: 768x768, v-prediction, DDIM; give a config folder for a 512 epsilon base model)"),
        _ => throw new ArgumentOutOfRangeException(nameof(family), family, "unknown family"),
    };

    /// <summary>diffusers 0.27.2's <c>SCHEDULER_DEFAULT_CONFIG</c> with <c>create_scheduler_from_ldm</c>'s SD
    /// settings, read as its default <c>DDIMScheduler.from_config</c> reads it.</summary>
    private static SchedulerConfig DefaultScheduler(string predictionType) => SchedulerConfig.FromJson($$"""
        {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "interpolation_type": "linear",
         "num_train_timesteps": 1000, "prediction_type": "{{predictionType}}", "sample_max_value": 1.0,
         "set_alpha_to_one": false, "skip_prk_steps": true, "steps_offset": 1, "timestep_spacing": "leading",
         "clip_sample": false}
        """, "DDIMScheduler");

    /// <summary>The configs of a diffusers Stable Diffusion folder: <c>unet/config.json</c>, <c>vae/config.json</c>,
    /// <c>text_encoder/config.json</c> (a CLIPTextModel) and <c>scheduler/scheduler_config.json</c>, all required,
    /// and its <c>tokenizer/</c> when there is one. No weights are read.</summary>
    public static SingleFileConfigs FromFolder(string folder)
    {
        ArgumentNullException.ThrowIfNull(folder);
        if (!Directory.Exists(folder)) throw new DiffusionCacheException($"{folder}: config folder not found");
        if (ModelIndex.Exists(folder) && ModelIndex.Load(folder) is { ClassName: not StableDiffusionPipeline.PipelineClass } index)
            throw new DiffusionCacheException($"{folder}: a {index.ClassName} folder; single files need the configs of a {StableDiffusionPipeline.PipelineClass}");
        string Require(string component, string file)
        {
            string path = Path.Combine(folder, component, file);
            return File.Exists(path) ? path
                : throw new DiffusionCacheException($"{folder}: {component}/{file} not found (a config folder needs the unet, vae, text_encoder and scheduler configs)");
        }
        string unet = Require("unet", "config.json"), vae = Require("vae", "config.json"), text = Require("text_encoder", "config.json"),
            scheduler = Require("scheduler", "scheduler_config.json");
        var (textConfig, projection) = TextEncoderLoader.ReadConfig(Path.GetDirectoryName(text)!);
        if (projection)
            throw new DiffusionCacheException($"{text}: a {TextEncoderLoader.TextModelWithProjection}; Stable Diffusion 1.x/2.x uses a {TextEncoderLoader.TextModel}");
        string tokenizer = Path.Combine(folder, "tokenizer");
        return new(UNet2DConditionConfig.FromFile(unet), AutoencoderKLConfig.FromFile(vae), textConfig, SchedulerConfig.FromFile(scheduler),
            Directory.Exists(tokenizer) ? tokenizer : null, $"the configs of {folder}");
    }

    /// <summary>The tokenizer shipped for the family (<c>models/tokenizers/clip-vit-large-patch14</c> for SD 1.x,
    /// <c>clip-sd2</c>, which pads with "!", for SD 2.x), found above the running program as the CLI finds the
    /// embedded model.</summary>
    public static string ShippedTokenizer(LdmFamily family)
    {
        string name = family == LdmFamily.StableDiffusion1 ? "clip-vit-large-patch14" : "clip-sd2";
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
