using DiffusionCache.Models.Layers;
using DiffusionCache.Models.Seam;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DiffusionCache.Models.Blocks;

/// <summary>
/// One down block of either U-Net family: resnets, optionally interleaved with spatial layers (Transformer2DModel
/// for CrossAttnDownBlock2D, Attention for AttnDownBlock2D), optionally a downsampler. diffusers' DownBlock2D,
/// CrossAttnDownBlock2D and AttnDownBlock2D differ only in that choice, so they share this class; the parameter
/// names (<c>resnets.j</c>, <c>attentions.j</c>, <c>downsamplers.0</c>) are the same in all three.
/// </summary>
public sealed class DownBlock : UNetBlock
{
    private readonly ModuleList<Downsample2D>? _downsamplers;
    private readonly BlockSite? _downsamplerSite;

    /// <summary>Assembles a down block and registers its call sites on <paramref name="seam"/> in execution order:
    /// the block (<c>down_blocks.{index}</c>), its resnets and spatial layers, then its downsampler.</summary>
    /// <param name="typeName">diffusers' block type (<c>DownBlock2D</c>, <c>CrossAttnDownBlock2D</c>,
    /// <c>AttnDownBlock2D</c>), kept as <see cref="UNetBlock.TypeName"/>.</param>
    /// <param name="seam">The owning U-Net's seam, which every layer call of this block goes through.</param>
    /// <param name="index">Position in <c>down_blocks</c>, which is also the block's resolution level.</param>
    /// <param name="resnets">The resnets (<c>resnets.j</c>).</param>
    /// <param name="attentions">The spatial layer run after each resnet (<c>attentions.j</c>), or null for a block
    /// without attention.</param>
    /// <param name="downsampler">The downsampler, or null (the last down block has none).</param>
    public DownBlock(string typeName, BlockSeam seam, int index, IReadOnlyList<ResnetBlock2D> resnets,
        IReadOnlyList<nn.Module<Tensor, Tensor?, Tensor>>? attentions, Downsample2D? downsampler)
        : base(typeName, seam, seam.Register($"down_blocks.{index}", BlockKind.DownBlock, index), resnets, attentions)
    {
        if (downsampler is null) return;
        _downsamplerSite = seam.Register($"{Site.Path}.downsamplers.0", BlockKind.Downsampler, index, resnets.Count);
        _downsamplers = nn.ModuleList(downsampler);
        register_module("downsamplers", _downsamplers);
    }

    /// <summary>Runs the block's layers, each through the seam at its own site.</summary>
    /// <param name="hidden">The block's input, [B, C_in, H, W].</param>
    /// <param name="temb">The time embedding, [B, temb_channels].</param>
    /// <param name="context">Cross-attention context [B, L, D]; null for blocks without cross-attention.</param>
    /// <returns>The block's hidden state and its skip tensors: one per layer, then the downsampler's output.</returns>
    public BlockOutput Forward(Tensor hidden, Tensor temb, Tensor? context)
    {
        var skips = new List<Tensor>(NumResnets + 1);
        for (int j = 0; j < NumResnets; j++)
        {
            hidden = RunResnet(j, hidden, temb);
            if (j < NumAttentions) hidden = RunAttention(j, hidden, context);
            skips.Add(hidden);
        }
        if (_downsamplers is not null)
        {
            var input = hidden;
            hidden = Seam.Run(new BlockCall(_downsamplerSite!, input), () => _downsamplers[0].call(input)).Hidden;
            skips.Add(hidden);
        }
        return new BlockOutput(hidden, skips);
    }
}
