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

    public bool UsesGuidance => GuidanceScale > 1.0;
}
