using DiffusionCache.Models.Seam;
using DiffusionCache.Models.Layers;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Models.Blocks;

/// <summary>The mid block (UNetMidBlock2DCrossAttn, UNetMidBlock2D): resnets.0, then (attention, resnet) pairs.</summary>
public sealed class MidBlock : UNetBlock
{
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
