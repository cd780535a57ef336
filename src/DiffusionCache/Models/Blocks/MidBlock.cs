using DiffusionCache.Models.Seam;
using DiffusionCache.Models.Layers;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Models.Blocks;

/// <summary>The mid block (UNetMidBlock2DCrossAttn, UNetMidBlock2D): resnets.0, then (attention, resnet) pairs.</summary>
public sealed class MidBlock : UNetBlock
{
    /// <summary>Assembles the mid block and registers its call sites (<c>mid_block</c>, then its layers in
    /// execution order) on <paramref name="seam"/>.</summary>
    /// <param name="typeName">diffusers' block type (<c>UNetMidBlock2DCrossAttn</c>, <c>UNetMidBlock2D</c>), kept as
    /// <see cref="UNetBlock.TypeName"/>.</param>
    /// <param name="seam">The owning U-Net's seam, which every layer call of this block goes through.</param>
    /// <param name="level">The block's resolution level: that of the last down block.</param>
    /// <param name="resnets">The resnets (<c>resnets.j</c>).</param>
    /// <param name="attentions">One spatial layer between each pair of resnets (<c>attentions.j</c>), or null.</param>
    /// <exception cref="ArgumentException"><paramref name="attentions"/> is not one shorter than
    /// <paramref name="resnets"/>.</exception>
    public MidBlock(string typeName, BlockSeam seam, int level, IReadOnlyList<ResnetBlock2D> resnets,
        IReadOnlyList<nn.Module<Tensor, Tensor?, Tensor>>? attentions)
        : base(typeName, seam, seam.Register("mid_block", BlockKind.MidBlock, level), resnets, Checked(resnets, attentions))
    {
    }

    private static IReadOnlyList<nn.Module<Tensor, Tensor?, Tensor>>? Checked(IReadOnlyList<ResnetBlock2D> resnets,
        IReadOnlyList<nn.Module<Tensor, Tensor?, Tensor>>? attentions) =>
        attentions is not null && attentions.Count != resnets.Count - 1
            ? throw new ArgumentException("a mid block has one attention between each pair of resnets")
            : attentions;

    /// <summary>resnets.0, then attentions.(j-1) and resnets.j for each further resnet, each through the
    /// seam.</summary>
    /// <param name="hidden">The block's input, [B, C, H, W].</param>
    /// <param name="temb">The time embedding, [B, temb_channels].</param>
    /// <param name="context">Cross-attention context [B, L, D]; null for models without cross-attention.</param>
    /// <returns>The block's output, [B, C, H, W].</returns>
    public Tensor Forward(Tensor hidden, Tensor temb, Tensor? context)
    {
        hidden = RunResnet(0, hidden, temb);
        for (int j = 1; j < NumResnets; j++)
        {
            if (NumAttentions > 0) hidden = RunAttention(j - 1, hidden, context);
            hidden = RunResnet(j, hidden, temb);
        }
        return hidden;
    }
}
