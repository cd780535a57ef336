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
public sealed class DownBlock : nn.Module
{
    /// <summary>Submodules are registered explicitly under diffusers' names; TorchSharp's reflective
    /// registration would add them again under C# field names.</summary>
    protected override void RegisterComponents() { }

    private readonly ModuleList<ResnetBlock2D> _resnets;
    private readonly ModuleList<nn.Module<Tensor, Tensor?, Tensor>>? _attentions;
    private readonly ModuleList<Downsample2D>? _downsamplers;
    private readonly BlockSeam _seam;
    private readonly BlockSite[] _resnetSites, _attentionSites;
    private readonly BlockSite? _downsamplerSite;

    public string TypeName { get; }
    public BlockSite Site { get; }
    public int NumResnets => _resnets.Count;

    public DownBlock(string typeName, BlockSeam seam, int index, IReadOnlyList<ResnetBlock2D> resnets,
        IReadOnlyList<nn.Module<Tensor, Tensor?, Tensor>>? attentions, Downsample2D? downsampler) : base(typeName)
    {
        TypeName = typeName;
        _seam = seam;
        string path = $"down_blocks.{index}";
        Site = seam.Register(path, BlockKind.DownBlock, index);
        var attentionKind = attentions?.FirstOrDefault() is Transformer2DModel ? BlockKind.Transformer : BlockKind.SelfAttention;
        _resnetSites = new BlockSite[resnets.Count];
        _attentionSites = new BlockSite[attentions?.Count ?? 0];
        for (int j = 0; j < resnets.Count; j++)
        {
            _resnetSites[j] = seam.Register($"{path}.resnets.{j}", BlockKind.Resnet, index, j);
            if (attentions is not null) _attentionSites[j] = seam.Register($"{path}.attentions.{j}", attentionKind, index, j);
        }
        if (downsampler is not null)
            _downsamplerSite = seam.Register($"{path}.downsamplers.0", BlockKind.Downsampler, index, resnets.Count);

        _resnets = nn.ModuleList(resnets.ToArray());
        register_module("resnets", _resnets);
        if (attentions is not null)
        {
            _attentions = nn.ModuleList(attentions.ToArray());
            register_module("attentions", _attentions);
        }
        if (downsampler is not null)
        {
            _downsamplers = nn.ModuleList(downsampler);
            register_module("downsamplers", _downsamplers);
        }
    }

    /// <returns>The block's hidden state and its skip tensors: one per layer, then the downsampler's output.</returns>
    public BlockOutput Forward(Tensor hidden, Tensor temb, Tensor? context)
    {
        var skips = new List<Tensor>(_resnets.Count + 1);
        for (int j = 0; j < _resnets.Count; j++)
        {
            var resnet = _resnets[j];
            var input = hidden;
            hidden = _seam.Run(new BlockCall(_resnetSites[j], input, resnet.PassThrough),
                () => resnet.call(input, temb)).Hidden;
            if (_attentions is not null)
            {
                var attention = _attentions[j];
                var attnInput = hidden;
                hidden = _seam.Run(new BlockCall(_attentionSites[j], attnInput, PassThroughOf(attention)),
                    () => attention.call(attnInput, context)).Hidden;
            }
            skips.Add(hidden);
        }
        if (_downsamplers is not null)
        {
            var input = hidden;
            hidden = _seam.Run(new BlockCall(_downsamplerSite!, input), () => _downsamplers[0].call(input)).Hidden;
            skips.Add(hidden);
        }
        return new BlockOutput(hidden, skips);
    }

    /// <summary>Transformer2DModel adds its input back (residual); diffusers' spatial Attention also does, but
    /// divides by rescale_output_factor, so only its factor-1 form is a plain residual.</summary>
    internal static Func<Tensor, Tensor>? PassThroughOf(nn.Module<Tensor, Tensor?, Tensor> layer) => layer switch
    {
        Transformer2DModel => x => x.alias(),
        Attention a when a.Options.ResidualConnection && a.Options.RescaleOutputFactor == 1.0 => x => x.alias(),
        _ => null,
    };
}
