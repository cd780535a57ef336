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

    /// <summary>The owning U-Net's seam, through which the block runs each of its layers.</summary>
    protected BlockSeam Seam { get; }
    /// <summary>diffusers' block type (e.g. <c>CrossAttnDownBlock2D</c>, <c>UNetMidBlock2DCrossAttn</c>); also the
    /// module's name.</summary>
    public string TypeName { get; }
    /// <summary>The whole block's call site (<c>down_blocks.i</c>, <c>mid_block</c>, <c>up_blocks.i</c>), through
    /// which the U-Net runs the block.</summary>
    public BlockSite Site { get; }
    /// <summary>Number of resnets; for an up block also the number of skip tensors it consumes.</summary>
    public int NumResnets => _resnets.Count;
    /// <summary>Number of spatial layers (<c>attentions.j</c>); 0 for a block without attention.</summary>
    protected int NumAttentions => _attentions?.Count ?? 0;

    /// <summary>Registers the layers under diffusers' names (<c>resnets</c>, <c>attentions</c>) and a call site
    /// for each on <paramref name="seam"/> (resnet j, then attention j), at the block's level.</summary>
    /// <param name="typeName">diffusers' block type, used as the module name.</param>
    /// <param name="seam">The owning U-Net's seam.</param>
    /// <param name="site">The block's own site, already registered by the derived class.</param>
    /// <param name="resnets">The resnets (<c>resnets.j</c>).</param>
    /// <param name="attentions">The spatial layers (<c>attentions.j</c>: all <see cref="Transformer2DModel"/> or
    /// all <see cref="Attention"/>), or null.</param>
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

    /// <summary>Runs <c>resnets.j</c> through the seam at its site, offering its pass-through (shortcut /
    /// output_scale_factor) for Block Caching.</summary>
    /// <param name="j">The resnet's index.</param>
    /// <param name="input">Its input, [B, C_in, H, W].</param>
    /// <param name="temb">The time embedding, [B, temb_channels].</param>
    /// <returns>Its output, [B, C_out, H, W].</returns>
    protected Tensor RunResnet(int j, Tensor input, Tensor temb)
    {
        var resnet = _resnets[j];
        return Seam.Run(new BlockCall(_resnetSites[j], input, resnet.PassThrough), () => resnet.call(input, temb)).Hidden;
    }

    /// <summary>Runs <c>attentions.j</c> through the seam at its site; a plain residual layer offers the identity
    /// as its pass-through.</summary>
    /// <param name="j">The spatial layer's index.</param>
    /// <param name="input">Its input, [B, C, H, W].</param>
    /// <param name="context">Cross-attention context [B, L, D], or null.</param>
    /// <returns>Its output, [B, C, H, W].</returns>
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
