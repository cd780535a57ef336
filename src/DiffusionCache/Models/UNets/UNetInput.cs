using static TorchSharp.torch;

namespace DiffusionCache.Models.UNets;

/// <summary>One denoiser call: the noisy sample [B,C,H,W], the timestep (scalar, [1] or [B]; fractional values
/// allowed), the context [B,L,D] for cross-attention models, and class labels [B] (int64) for class-conditional
/// ones.</summary>
public sealed record UNetInput(Tensor Sample, Tensor Timestep, Tensor? Context = null, Tensor? ClassLabels = null);
