using TorchSharp;

namespace DiffusionCache.Models.Seam;

/// <summary>
/// One call of an addressable block during a forward pass. <see cref="Input"/> is the block's first input (for the
/// resnets of an up block: the concatenation of hidden state and skip). <see cref="PassThrough"/> is the block's
/// residual path for residual kinds (identity for a transformer, shortcut/output_scale_factor for a resnet), so
/// that out = C + PassThrough(in) (Block Caching, eq. 4-5); null for kinds that are not residual.
/// </summary>
/// <param name="Site">The call site being run: its module path, kind and position in the U-Net.</param>
/// <param name="Input">The block's first input, [B, C, H, W] (for the resnets of an up block: cat([hidden, skip])
/// along channels). It belongs to the forward pass's dispose scope.</param>
/// <param name="PassThrough">Maps an input to the block's residual path, returning a new tensor that the caller
/// owns; null for kinds that are not residual.</param>
public sealed record BlockCall(BlockSite Site, torch.Tensor Input, Func<torch.Tensor, torch.Tensor>? PassThrough = null)
{
    /// <summary>The diffusers module path of <see cref="Site"/>, e.g. <c>up_blocks.1.attentions.2</c>.</summary>
    public string Path => Site.Path;
    /// <summary>The kind of <see cref="Site"/>, which policies use to pick their targets.</summary>
    public BlockKind Kind => Site.Kind;
}

/// <summary>The static identity of a call site: its diffusers module path (<c>up_blocks.1.attentions.2</c>), kind,
/// and position in the U-Net (level: resolution level counted from the top; index: position within its block) for
/// policies that reason about depth. Sites are registered once, when the model is built.</summary>
/// <param name="Path">diffusers module path, which is also the prefix of the site's parameter names.</param>
/// <param name="Kind">What the site is (resnet, transformer, whole block, ...).</param>
/// <param name="Level">Resolution level counted from the top (0 = full resolution; the mid block is at the
/// deepest level, as is the first up block); -1 for the stem and the embeddings.</param>
/// <param name="Index">Position within its block: j for <c>resnets.j</c> and <c>attentions.j</c>, the resnet
/// count for the block's down- or upsampler; -1 for whole blocks, the stem and the embeddings.</param>
/// <param name="OnUpPath">True for up blocks and every site inside them.</param>
public sealed record BlockSite(string Path, BlockKind Kind, int Level = -1, int Index = -1, bool OnUpPath = false);
