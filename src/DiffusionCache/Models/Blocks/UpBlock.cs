using DiffusionCache.Models.Layers;
using DiffusionCache.Models.Seam;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DiffusionCache.Models.Blocks;

/// <summary>
/// One up block of either U-Net family (UpBlock2D, CrossAttnUpBlock2D, AttnUpBlock2D): each resnet takes
/// cat([hidden, skip]) with skips consumed from the end of the down path, optionally followed by a spatial layer;
/// then an optional upsampler.
/// </summary>
public sealed class UpBlock : UNetBlock
{
    private readonly ModuleList<Upsample2D>? _upsamplers;
    private readonly BlockSite? _upsamplerSite;

    /// <summary>Whether the block ends in an upsampler (every up block but the last).</summary>
    public bool HasUpsampler => _upsamplers is not null;

    /// <summary>Assembles an up block and registers its call sites on <paramref name="seam"/> in execution order:
    /// the block (<c>up_blocks.{index}</c>), its resnets and spatial layers, then its upsampler.</summary>
    /// <param name="typeName">diffusers' block type (<c>UpBlock2D</c>, <c>CrossAttnUpBlock2D</c>,
    /// <c>AttnUpBlock2D</c>), kept as <see cref="UNetBlock.TypeName"/>.</param>
    /// <param name="seam">The owning U-Net's seam, which every layer call of this block goes through.</param>
    /// <param name="index">Position in <c>up_blocks</c> (0 = lowest resolution).</param>
    /// <param name="level">Resolution level counted from the top: number of levels - 1 -
    /// <paramref name="index"/>.</param>
    /// <param name="resnets">The resnets (<c>resnets.j</c>); each takes cat([hidden, skip]) channels.</param>
    /// <param name="attentions">The spatial layer run after each resnet (<c>attentions.j</c>), or null.</param>
    /// <param name="upsampler">The upsampler, or null (the last up block has none).</param>
    public UpBlock(string typeName, BlockSeam seam, int index, int level, IReadOnlyList<ResnetBlock2D> resnets,
        IReadOnlyList<nn.Module<Tensor, Tensor?, Tensor>>? attentions, Upsample2D? upsampler)
        : base(typeName, seam, seam.Register($"up_blocks.{index}", BlockKind.UpBlock, level, onUpPath: true), resnets, attentions)
    {
        if (upsampler is null) return;
        _upsamplerSite = seam.Register($"{Site.Path}.upsamplers.0", BlockKind.Upsampler, level, resnets.Count, onUpPath: true);
        _upsamplers = nn.ModuleList(upsampler);
        register_module("upsamplers", _upsamplers);
    }

    /// <summary>Runs the block's layers, each through the seam at its own site: resnet j takes
    /// cat([hidden, skip]) along channels, skips taken from the end.</summary>
    /// <param name="hidden">The block's input, [B, C, H, W].</param>
    /// <param name="skips">This block's skip tensors in down-path order; consumed from the end.</param>
    /// <param name="temb">The time embedding, [B, temb_channels].</param>
    /// <param name="context">Cross-attention context [B, L, D]; null for blocks without cross-attention.</param>
    /// <param name="upsampleSize">Explicit output size [H, W] for the upsampler, for inputs whose sides are not
    /// multiples of the U-Net's total down factor; null doubles the size.</param>
    /// <returns>The block's output; the caller owns it.</returns>
    public Tensor Forward(Tensor hidden, IReadOnlyList<Tensor> skips, Tensor temb, Tensor? context, long[]? upsampleSize)
    {
        using var scope = NewDisposeScope();
        for (int j = 0; j < NumResnets; j++)
        {
            hidden = RunResnet(j, cat([hidden, skips[skips.Count - 1 - j]], 1), temb);
            if (j < NumAttentions) hidden = RunAttention(j, hidden, context);
        }
        if (_upsamplers is not null)
        {
            var input = hidden;
            hidden = Seam.Run(new BlockCall(_upsamplerSite!, input), () => _upsamplers[0].Forward(input, upsampleSize)).Hidden;
        }
        return hidden.MoveToOuterDisposeScope();
    }
}
