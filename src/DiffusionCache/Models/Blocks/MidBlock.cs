using DiffusionCache.Models.Layers;
using DiffusionCache.Models.Seam;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DiffusionCache.Models.Blocks;

/// <summary>The mid block (UNetMidBlock2DCrossAttn, UNetMidBlock2D): resnets.0, then (attention, resnet) pairs.</summary>
public sealed class MidBlock : nn.Module
{
    /// <summary>Submodules are registered explicitly under diffusers' names; TorchSharp's reflective
    /// registration would add them again under C# field names.</summary>
    protected override void RegisterComponents() { }

    private readonly ModuleList<ResnetBlock2D> _resnets;
    private readonly ModuleList<nn.Module<Tensor, Tensor?, Tensor>>? _attentions;
    private readonly BlockSeam _seam;
    private readonly BlockSite[] _resnetSites, _attentionSites;

    public string TypeName { get; }
    public BlockSite Site { get; }

    public MidBlock(string typeName, BlockSeam seam, int level, IReadOnlyList<ResnetBlock2D> resnets,
        IReadOnlyList<nn.Module<Tensor, Tensor?, Tensor>>? attentions) : base(typeName)
    {
        if (attentions is not null && attentions.Count != resnets.Count - 1)
            throw new ArgumentException("a mid block has one attention between each pair of resnets");
        TypeName = typeName;
        _seam = seam;
        Site = seam.Register("mid_block", BlockKind.MidBlock, level);
        var attentionKind = attentions?.FirstOrDefault() is Transformer2DModel ? BlockKind.Transformer : BlockKind.SelfAttention;
        _resnetSites = new BlockSite[resnets.Count];
        _attentionSites = new BlockSite[attentions?.Count ?? 0];
        _resnetSites[0] = seam.Register("mid_block.resnets.0", BlockKind.Resnet, level, 0);
        for (int j = 1; j < resnets.Count; j++)
        {
            if (attentions is not null)
                _attentionSites[j - 1] = seam.Register($"mid_block.attentions.{j - 1}", attentionKind, level, j - 1);
            _resnetSites[j] = seam.Register($"mid_block.resnets.{j}", BlockKind.Resnet, level, j);
        }
        _resnets = nn.ModuleList(resnets.ToArray());
        register_module("resnets", _resnets);
        if (attentions is not null)
        {
            _attentions = nn.ModuleList(attentions.ToArray());
            register_module("attentions", _attentions);
        }
    }

    public Tensor Forward(Tensor hidden, Tensor temb, Tensor? context)
    {
        hidden = RunResnet(0, hidden, temb);
        for (int j = 1; j < _resnets.Count; j++)
        {
            if (_attentions is not null)
            {
                var attention = _attentions[j - 1];
                var input = hidden;
                hidden = _seam.Run(new BlockCall(_attentionSites[j - 1], input, DownBlock.PassThroughOf(attention)),
                    () => attention.call(input, context)).Hidden;
            }
            hidden = RunResnet(j, hidden, temb);
        }
        return hidden;
    }

    private Tensor RunResnet(int j, Tensor input, Tensor temb)
    {
        var resnet = _resnets[j];
        return _seam.Run(new BlockCall(_resnetSites[j], input, resnet.PassThrough), () => resnet.call(input, temb)).Hidden;
    }
}
