using static TorchSharp.torch;

namespace DiffusionCache.Models.UNets;

/// <summary>One denoiser call: the noisy sample [B,C,H,W], the timestep (scalar, [1] or [B]; fractional values
/// allowed), the context [B,L,D] for cross-attention models, class labels [B] (int64) for class-conditional
/// ones, and SDXL's added conditioning (diffusers' <c>added_cond_kwargs</c>): pooled text embeddings [B,P] and
/// time ids [B,6].</summary>
public sealed record UNetInput(Tensor Sample, Tensor Timestep, Tensor? Context = null, Tensor? ClassLabels = null,
    Tensor? TextEmbeds = null, Tensor? TimeIds = null);
