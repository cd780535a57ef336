using TorchSharp;

namespace DiffusionCache.Models.Seam;

/// <summary>
/// One call of an addressable block during a forward pass. <see cref="Input"/> is the block's first input (for the
/// resnets of an up block: the concatenation of hidden state and skip). <see cref="PassThrough"/> is the block's
/// residual path for residual kinds (identity for a transformer, shortcut/output_scale_factor for a resnet), so
/// that out = C + PassThrough(in) (Block Caching, eq. 4-5); null for kinds that are not residual.
/// </summary>
public sealed record BlockCall(BlockSite Site, torch.Tensor Input, Func<torch.Tensor, torch.Tensor>? PassThrough = null)
{
    public string Path => Site.Path;
    public BlockKind Kind => Site.Kind;
}

/// <summary>The static identity of a call site: its diffusers module path (<c>up_blocks.1.attentions.2</c>), kind,
/// and position in the U-Net (level: resolution level counted from the top; index: position within its block) for policies that reason about
/// depth.</summary>
public sealed record BlockSite(string Path, BlockKind Kind, int Level = -1, int Index = -1, bool OnUpPath = false);
