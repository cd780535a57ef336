using static TorchSharp.torch;

namespace DiffusionCache.Models.UNets;

/// <summary>One denoiser call: the noisy sample [B,C,H,W], the timestep (scalar, [1] or [B]; fractional values
/// allowed), the context [B,L,D] for cross-attention models, class labels [B] (int64) for class-conditional
/// ones, and SDXL's added conditioning (diffusers' <c>added_cond_kwargs</c>): pooled text embeddings [B,P] and
/// time ids [B,6].</summary>
/// <param name="Sample">The noisy sample, [B, in_channels, H, W], in the model's type and on its device.</param>
/// <param name="Timestep">The timestep: a scalar or [1] (broadcast to the batch) or [B]; fractional values are
/// kept.</param>
/// <param name="Context">Cross-attention context (diffusers' <c>encoder_hidden_states</c>), [B, L, D] with D the
/// model's <see cref="DiffusionUNet.ContextDim"/>; required by <see cref="UNet2DConditionModel"/>, ignored by
/// <see cref="UNet2DModel"/>.</param>
/// <param name="ClassLabels">Class labels [B] (int64) for models with <c>num_class_embeds</c>; must be null for
/// others.</param>
/// <param name="TextEmbeds">SDXL's pooled text embeddings [B, P] (<c>added_cond_kwargs["text_embeds"]</c>);
/// required when the model has <c>addition_embed_type</c> <c>text_time</c>.</param>
/// <param name="TimeIds">SDXL's size and crop conditioning [B, 6] (original h, w, crop top, left, target h, w;
/// <c>added_cond_kwargs["time_ids"]</c>); required with <c>text_time</c>.</param>
public sealed record UNetInput(Tensor Sample, Tensor Timestep, Tensor? Context = null, Tensor? ClassLabels = null,
    Tensor? TextEmbeds = null, Tensor? TimeIds = null);
