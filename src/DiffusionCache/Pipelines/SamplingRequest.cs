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
    /// <summary>Inference steps, passed to <see cref="Schedulers.IScheduler.SetTimesteps"/> (the U-Net runs once per
    /// timestep: more often than this for PNDM).</summary>
    public required int Steps { get; init; }
    /// <summary>Number of samples B; guidance runs the U-Net on 2B rows.</summary>
    public required int Batch { get; init; }
    /// <summary>Height of the sample the U-Net denoises, in latent pixels (image height / VAE scale factor).</summary>
    public required int Height { get; init; }
    /// <summary>Width of the sample the U-Net denoises, in latent pixels (image width / VAE scale factor).</summary>
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
    /// <summary>SDXL: the pooled embeddings [B, P] of the negative prompts; required with
    /// <see cref="TextEmbeds"/> under guidance.</summary>
    public Tensor? UnconditionalTextEmbeds { get; init; }
    /// <summary>SDXL: the time ids [B, 6] of the conditional half (float32); set together with
    /// <see cref="TextEmbeds"/>.</summary>
    public Tensor? TimeIds { get; init; }
    /// <summary>SDXL: the time ids [B, 6] of the unconditional half; required with <see cref="TimeIds"/> under
    /// guidance.</summary>
    public Tensor? UnconditionalTimeIds { get; init; }
    /// <summary>The classifier-free guidance scale g in <c>u + g (c - u)</c>: finite and &gt;= 0; used only when
    /// <see cref="UnconditionalContext"/> is given. Default 1.</summary>
    public double GuidanceScale { get; init; } = 1.0;
    /// <summary>Seed of the initial noise and of every stochastic step: same seed, same result (bitwise on CPU).</summary>
    public long Seed { get; init; }
    /// <summary>x_T to start from instead of seeded noise (unscaled; init_noise_sigma is applied).</summary>
    public Tensor? InitialNoise { get; init; }

    /// <summary>Whether classifier-free guidance runs: <see cref="UnconditionalContext"/> is given, whatever
    /// <see cref="GuidanceScale"/> is.</summary>
    public bool UsesGuidance => UnconditionalContext is not null;
}

/// <summary>The U-Net's conditioning for every step of a request (with guidance: the [uncond; cond] batch), made by
/// <see cref="DiffusionSampler.Conditioning"/>.</summary>
/// <param name="Context">Cross-attention context [B or 2B, L, D] in the U-Net's dtype; null for models without
/// one.</param>
/// <param name="Labels">Class labels [B or 2B] int64 for models with a class embedding; else null.</param>
/// <param name="TextEmbeds">SDXL pooled text embeddings [B or 2B, P]; else null.</param>
/// <param name="TimeIds">SDXL time ids [B or 2B, 6], float32; else null.</param>
public sealed record UNetConditioning(Tensor? Context, Tensor? Labels, Tensor? TextEmbeds, Tensor? TimeIds)
{
    /// <summary>The U-Net input of one step: <paramref name="sample"/> at <paramref name="timestep"/> with this
    /// conditioning (the tensors are shared, not copied).</summary>
    /// <param name="sample">The scaled model input, [B or 2B, C, h, w] as the conditioning's batch.</param>
    /// <param name="timestep">The step's timestep, a scalar float32 tensor.</param>
    public UNetInput Input(Tensor sample, Tensor timestep) => new(sample, timestep, Context, Labels, TextEmbeds, TimeIds);
}

/// <summary>Where the loop stands: what per-step observers (progress, caching policies) are told.</summary>
/// <param name="Index">The step's loop index, 0 .. <paramref name="Count"/> - 1 (the index the scheduler steps
/// with).</param>
/// <param name="Count">The number of steps of the generation (the scheduler's timestep count).</param>
/// <param name="Timestep">The step's timestep (fractional for Euler).</param>
public sealed record StepInfo(int Index, int Count, double Timestep);

/// <summary>Told about every generation and step of the sampling loop. Caching policies use it to learn the step
/// index and timestep and to reset their caches between generations; progress displays use it too. Calls happen
/// inside the sampler's dispose scopes: an observer that keeps a tensor clones it and detaches the clone
/// (<c>DetachFromDisposeScope</c>), and frees it itself.</summary>
public interface IStepObserver
{
    /// <summary>Called once before the first step, after the scheduler's timesteps are set. Does nothing by
    /// default.</summary>
    /// <param name="request">The request being sampled.</param>
    /// <param name="timesteps">The scheduler's timesteps, in loop order.</param>
    void BeginGeneration(SamplingRequest request, IReadOnlyList<double> timesteps) { }
    /// <summary>Called before the U-Net runs at <paramref name="step"/>. Does nothing by default.</summary>
    /// <param name="step">Where the loop stands.</param>
    void BeginStep(StepInfo step) { }
    /// <summary>Called after the U-Net ran, before guidance. Does nothing by default.</summary>
    /// <param name="step">Where the loop stands.</param>
    /// <param name="modelInput">the U-Net's input sample (scaled, both guidance halves).</param>
    /// <param name="output">the U-Net's raw output, before guidance (do not keep either without cloning).</param>
    void OnModelOutput(StepInfo step, Tensor modelInput, Tensor output) { }
    /// <summary>Called with the prediction the scheduler is about to step with. Does nothing by default.</summary>
    /// <param name="step">Where the loop stands.</param>
    /// <param name="prediction">the (guided) model output the scheduler steps with (do not keep without cloning).</param>
    void OnPrediction(StepInfo step, Tensor prediction) { }
    /// <summary>Called after the scheduler's step. Does nothing by default.</summary>
    /// <param name="step">Where the loop stands.</param>
    /// <param name="latents">the sample after this step (do not keep without cloning).</param>
    void EndStep(StepInfo step, Tensor latents) { }
    /// <summary>Called once after the last step, also when the loop fails or is cancelled. Does nothing by
    /// default.</summary>
    void EndGeneration() { }
}
