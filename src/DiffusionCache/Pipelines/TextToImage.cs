using static TorchSharp.torch;

namespace DiffusionCache.Pipelines;

/// <summary>
/// One text-to-image call, with diffusers' <c>StableDiffusionPipeline.__call__</c> defaults: 50 steps, guidance 7.5
/// (classifier-free guidance runs when it is above 1), the empty string as the negative prompt, height and width
/// from the U-Net's sample size times the VAE's scale factor.
/// </summary>
public sealed record TextToImage
{
    /// <summary>One image batch row per prompt (times <see cref="ImagesPerPrompt"/>).</summary>
    public required IReadOnlyList<string> Prompts { get; init; }
    /// <summary>One per prompt, or a single one for all; null is "" for each.</summary>
    public IReadOnlyList<string>? NegativePrompts { get; init; }
    /// <summary>Inference steps (<c>num_inference_steps</c>); default 50.</summary>
    public int Steps { get; init; } = 50;
    /// <summary>Classifier-free guidance scale (<c>guidance_scale</c>), default 7.5. Guidance runs only when it is
    /// above 1.</summary>
    public double GuidanceScale { get; init; } = 7.5;
    /// <summary>Seed of the initial latents and of the stochastic scheduler steps: same seed, same images.</summary>
    public long Seed { get; init; }
    /// <summary>Image height in pixels, a positive multiple of 8 and of the VAE scale factor; null: the pipeline's
    /// <see cref="TextToImagePipeline.DefaultHeight"/>.</summary>
    public int? Height { get; init; }
    /// <summary>Image width in pixels, a positive multiple of 8 and of the VAE scale factor; null: the pipeline's
    /// <see cref="TextToImagePipeline.DefaultWidth"/>.</summary>
    public int? Width { get; init; }
    /// <summary>Images per prompt (<c>num_images_per_prompt</c>), at least 1; the batch is prompts × this.</summary>
    public int ImagesPerPrompt { get; init; } = 1;
    /// <summary>Condition on the output of layer L - k (final-normalised) instead of the last one; 0 = last.</summary>
    public int ClipSkip { get; init; }
    /// <summary>x_T [B·n, 4, h, w] to start from instead of seeded noise (unscaled; init_noise_sigma is applied).</summary>
    public Tensor? Latents { get; init; }

    /// <summary>SDXL: the prompts for the second text encoder (null: the same as <see cref="Prompts"/>).</summary>
    public IReadOnlyList<string>? Prompts2 { get; init; }
    /// <summary>SDXL: the negative prompts for the second text encoder (null: the same as the first).</summary>
    public IReadOnlyList<string>? NegativePrompts2 { get; init; }
    /// <summary>SDXL size conditioning <c>original_size</c> (height, width); null: the output size.</summary>
    public (int Height, int Width)? OriginalSize { get; init; }
    /// <summary>SDXL crop conditioning <c>crops_coords_top_left</c> (top, left); null: (0, 0).</summary>
    public (int Top, int Left)? CropsTopLeft { get; init; }
    /// <summary>SDXL size conditioning <c>target_size</c> (height, width); null: the output size.</summary>
    public (int Height, int Width)? TargetSize { get; init; }
    /// <summary>SDXL: separate size conditioning of the negative batch, used when both sizes are given.</summary>
    public (int Height, int Width)? NegativeOriginalSize { get; init; }
    /// <summary>SDXL: the negative batch's <c>crops_coords_top_left</c>, used with both negative sizes; null:
    /// (0, 0).</summary>
    public (int Top, int Left)? NegativeCropsTopLeft { get; init; }
    /// <summary>SDXL: the negative batch's <c>target_size</c>; with <see cref="NegativeOriginalSize"/> it replaces the
    /// positive size conditioning for the negative batch.</summary>
    public (int Height, int Width)? NegativeTargetSize { get; init; }

    /// <summary>Whether classifier-free guidance runs: <see cref="GuidanceScale"/> &gt; 1, as diffusers'
    /// <c>do_classifier_free_guidance</c>.</summary>
    public bool UsesGuidance => GuidanceScale > 1.0;
}
