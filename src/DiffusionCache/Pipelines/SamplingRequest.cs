using DiffusionCache.Models.UNets;
using static TorchSharp.torch;

namespace DiffusionCache.Pipelines;

/// <summary>
/// One batch to sample. The condition is just tensors: a text encoder's or a label encoder's context (for
/// cross-attention models), and/or class labels (for class-embedding models). Classifier-free guidance runs when an
/// unconditional context is given: uncond and cond go through the U-Net as one batch, uncond first.
/// </summary>
public sealed record SamplingRequest
{
    public required int Steps { get; init; }
    public required int Batch { get; init; }
    public required int Height { get; init; }
    public required int Width { get; init; }
    /// <summary>[B, L, D] for cross-attention models; null for unconditional ones.</summary>
    public Tensor? Context { get; init; }
    /// <summary>[B, L, D]: enables classifier-free guidance.</summary>
    public Tensor? UnconditionalContext { get; init; }
    /// <summary>[B] int64 for models with a class embedding.</summary>
    public Tensor? ClassLabels { get; init; }
    /// <summary>SDXL: pooled text embeddings [B, P] and time ids [B, 6] (original h, w, crop top, left, target h, w),
    /// with their unconditional counterparts under guidance.</summary>
    public Tensor? TextEmbeds { get; init; }
    public Tensor? UnconditionalTextEmbeds { get; init; }
    public Tensor? TimeIds { get; init; }
    public Tensor? UnconditionalTimeIds { get; init; }
    public double GuidanceScale { get; init; } = 1.0;
    /// <summary>Seed of the initial noise and of every stochastic step: same seed, same result (bitwise on CPU).</summary>
    public long Seed { get; init; }
    /// <summary>x_T to start from instead of seeded noise (unscaled; init_noise_sigma is applied).</summary>
    public Tensor? InitialNoise { get; init; }

    public bool UsesGuidance => UnconditionalContext is not null;
}

/// <summary>The U-Net's conditioning for every step of a request (with guidance: the [uncond; cond] batch).</summary>
public sealed record UNetConditioning(Tensor? Context, Tensor? Labels, Tensor? TextEmbeds, Tensor? TimeIds)
{
    public UNetInput Input(Tensor sample, Tensor timestep) => new(sample, timestep, Context, Labels, TextEmbeds, TimeIds);
}

/// <summary>Where the loop stands: what per-step observers (progress, caching policies) are told.</summary>
public sealed record StepInfo(int Index, int Count, double Timestep);

/// <summary>Told about every generation and step of the sampling loop. Caching policies use it to learn the step
/// index and timestep and to reset their caches between generations; progress displays use it too. Calls happen
/// inside the sampler's dispose scopes: an observer that keeps a tensor clones it and detaches the clone
/// (<c>DetachFromDisposeScope</c>), and frees it itself.</summary>
public interface IStepObserver
{
    void BeginGeneration(SamplingRequest request, IReadOnlyList<double> timesteps) { }
    void BeginStep(StepInfo step) { }
    /// <param name="modelInput">the U-Net's input sample (scaled, both guidance halves).</param>
    /// <param name="output">the U-Net's raw output, before guidance (do not keep either without cloning).</param>
    void OnModelOutput(StepInfo step, Tensor modelInput, Tensor output) { }
    /// <param name="prediction">the (guided) model output the scheduler steps with (do not keep without cloning).</param>
    void OnPrediction(StepInfo step, Tensor prediction) { }
    /// <param name="latents">the sample after this step (do not keep without cloning).</param>
    void EndStep(StepInfo step, Tensor latents) { }
    void EndGeneration() { }
}
