using DiffusionCache.Models.Layers;
using DiffusionCache.Models.Seam;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DiffusionCache.Models.Blocks;

/// <summary>
/// What down, mid and up blocks share: resnets (<c>resnets.j</c>) interleaved with optional spatial layers
/// (<c>attentions.j</c>: Transformer2DModel or the DDPM family's self-attention), each called through the seam at
/// its own site, registered in execution order (resnet j, then attention j).
/// </summary>
public abstract class UNetBlock : nn.Module
{
    private readonly ModuleList<ResnetBlock2D> _resnets;
    private readonly ModuleList<nn.Module<Tensor, Tensor?, Tensor>>? _attentions;
    private readonly BlockSite[] _resnetSites, _attentionSites;

    protected BlockSeam Seam { get; }
    public string TypeName { get; }
    public BlockSite Site { get; }
    public int NumResnets => _resnets.Count;
    protected int NumAttentions => _attentions?.Count ?? 0;

    protected UNetBlock(string typeName, BlockSeam seam, BlockSite site, IReadOnlyList<ResnetBlock2D> resnets,
        IReadOnlyList<nn.Module<Tensor, Tensor?, Tensor>>? attentions) : base(typeName)
    {
        TypeName = typeName;
        Seam = seam;
        Site = site;
        var attentionKind = attentions?.FirstOrDefault() is Transformer2DModel ? BlockKind.Transformer : BlockKind.SelfAttention;
        _resnetSites = new BlockSite[resnets.Count];
        _attentionSites = new BlockSite[attentions?.Count ?? 0];
        for (int j = 0; j < resnets.Count; j++)
        {
            _resnetSites[j] = seam.Register($"{site.Path}.resnets.{j}", BlockKind.Resnet, site.Level, j, site.OnUpPath);
            if (j < _attentionSites.Length)
                _attentionSites[j] = seam.Register($"{site.Path}.attentions.{j}", attentionKind, site.Level, j, site.OnUpPath);
        }
        _resnets = nn.ModuleList(resnets.ToArray());
        register_module("resnets", _resnets);
        if (attentions is not null)
        {
            _attentions = nn.ModuleList(attentions.ToArray());
            register_module("attentions", _attentions);
        }
    }

    /// <summary>Submodules are registered explicitly under diffusers' names; TorchSharp's reflective
    /// registration would add them again under C# field names.</summary>
    protected override void RegisterComponents() { }

    protected Tensor RunResnet(int j, Tensor input, Tensor temb)
    {
        var resnet = _resnets[j];
        return Seam.Run(new BlockCall(_resnetSites[j], input, resnet.PassThrough), () => resnet.call(input, temb)).Hidden;
    }

    protected Tensor RunAttention(int j, Tensor input, Tensor? context)
    {
        var attention = _attentions![j];
        return Seam.Run(new BlockCall(_attentionSites[j], input, PassThroughOf(attention)), () => attention.call(input, context)).Hidden;
    }

    /// <summary>Transformer2DModel adds its input back (residual); diffusers' spatial Attention also does, but
    /// divides by rescale_output_factor, so only its factor-1 form is a plain residual.</summary>
    private static Func<Tensor, Tensor>? PassThroughOf(nn.Module<Tensor, Tensor?, Tensor> layer) => layer switch
    {
        Transformer2DModel => x => x.alias(),
        Attention a when a.Options.ResidualConnection && a.Options.RescaleOutputFactor == 1.0 => x => x.alias(),
        _ => null,
    };
}
