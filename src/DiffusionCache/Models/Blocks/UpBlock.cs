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

    public bool HasUpsampler => _upsamplers is not null;

    public UpBlock(string typeName, BlockSeam seam, int index, int level, IReadOnlyList<ResnetBlock2D> resnets,
        IReadOnlyList<nn.Module<Tensor, Tensor?, Tensor>>? attentions, Upsample2D? upsampler)
        : base(typeName, seam, seam.Register($"up_blocks.{index}", BlockKind.UpBlock, level, onUpPath: true), resnets, attentions)
    {
        if (upsampler is null) return;
        _upsamplerSite = seam.Register($"{Site.Path}.upsamplers.0", BlockKind.Upsampler, level, resnets.Count, onUpPath: true);
        _upsamplers = nn.ModuleList(upsampler);
        register_module("upsamplers", _upsamplers);
    }

    /// <param name="skips">This block's skip tensors in down-path order; consumed from the end.</param>
    /// <param name="upsampleSize">Explicit output size for the upsampler when the input side is odd.</param>
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
