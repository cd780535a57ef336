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
    public int Steps { get; init; } = 50;
    public double GuidanceScale { get; init; } = 7.5;
    public long Seed { get; init; }
    public int? Height { get; init; }
    public int? Width { get; init; }
    public int ImagesPerPrompt { get; init; } = 1;
    /// <summary>Condition on the output of layer L - k (final-normalised) instead of the last one; 0 = last.</summary>
    public int ClipSkip { get; init; }
    /// <summary>x_T [B·n, 4, h, w] to start from instead of seeded noise (unscaled; init_noise_sigma is applied).</summary>
    public Tensor? Latents { get; init; }

    /// <summary>SDXL: the prompts for the second text encoder (null: the same as <see cref="Prompts"/>).</summary>
    public IReadOnlyList<string>? Prompts2 { get; init; }
    /// <summary>SDXL: the negative prompts for the second text encoder (null: the same as the first).</summary>
    public IReadOnlyList<string>? NegativePrompts2 { get; init; }
    /// <summary>SDXL size conditioning (height, width) and crop (top, left); null: the output size and (0, 0).</summary>
    public (int Height, int Width)? OriginalSize { get; init; }
    public (int Top, int Left)? CropsTopLeft { get; init; }
    public (int Height, int Width)? TargetSize { get; init; }
    /// <summary>SDXL: separate size conditioning of the negative batch, used when both sizes are given.</summary>
    public (int Height, int Width)? NegativeOriginalSize { get; init; }
    public (int Top, int Left)? NegativeCropsTopLeft { get; init; }
    public (int Height, int Width)? NegativeTargetSize { get; init; }

    public bool UsesGuidance => GuidanceScale > 1.0;
}
