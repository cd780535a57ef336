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
public sealed class UpBlock : nn.Module
{
    /// <summary>Submodules are registered explicitly under diffusers' names; TorchSharp's reflective
    /// registration would add them again under C# field names.</summary>
    protected override void RegisterComponents() { }

    private readonly ModuleList<ResnetBlock2D> _resnets;
    private readonly ModuleList<nn.Module<Tensor, Tensor?, Tensor>>? _attentions;
    private readonly ModuleList<Upsample2D>? _upsamplers;
    private readonly BlockSeam _seam;
    private readonly BlockSite[] _resnetSites, _attentionSites;
    private readonly BlockSite? _upsamplerSite;

    public string TypeName { get; }
    public BlockSite Site { get; }
    public int NumResnets => _resnets.Count;
    public bool HasUpsampler => _upsamplers is not null;

    public UpBlock(string typeName, BlockSeam seam, int index, int level, IReadOnlyList<ResnetBlock2D> resnets,
        IReadOnlyList<nn.Module<Tensor, Tensor?, Tensor>>? attentions, Upsample2D? upsampler) : base(typeName)
    {
        TypeName = typeName;
        _seam = seam;
        string path = $"up_blocks.{index}";
        Site = seam.Register(path, BlockKind.UpBlock, level, onUpPath: true);
        var attentionKind = attentions?.FirstOrDefault() is Transformer2DModel ? BlockKind.Transformer : BlockKind.SelfAttention;
        _resnetSites = new BlockSite[resnets.Count];
        _attentionSites = new BlockSite[attentions?.Count ?? 0];
        for (int j = 0; j < resnets.Count; j++)
        {
            _resnetSites[j] = seam.Register($"{path}.resnets.{j}", BlockKind.Resnet, level, j, onUpPath: true);
            if (attentions is not null)
                _attentionSites[j] = seam.Register($"{path}.attentions.{j}", attentionKind, level, j, onUpPath: true);
        }
        if (upsampler is not null)
            _upsamplerSite = seam.Register($"{path}.upsamplers.0", BlockKind.Upsampler, level, resnets.Count, onUpPath: true);

        _resnets = nn.ModuleList(resnets.ToArray());
        register_module("resnets", _resnets);
        if (attentions is not null)
        {
            _attentions = nn.ModuleList(attentions.ToArray());
            register_module("attentions", _attentions);
        }
        if (upsampler is not null)
        {
            _upsamplers = nn.ModuleList(upsampler);
            register_module("upsamplers", _upsamplers);
        }
    }

    /// <param name="skips">This block's skip tensors in down-path order; consumed from the end.</param>
    /// <param name="upsampleSize">Explicit output size for the upsampler when the input side is odd.</param>
    public Tensor Forward(Tensor hidden, IReadOnlyList<Tensor> skips, Tensor temb, Tensor? context, long[]? upsampleSize)
    {
        using var scope = NewDisposeScope();
        for (int j = 0; j < _resnets.Count; j++)
        {
            var resnet = _resnets[j];
            var input = cat([hidden, skips[skips.Count - 1 - j]], 1);
            hidden = _seam.Run(new BlockCall(_resnetSites[j], input, resnet.PassThrough),
                () => resnet.call(input, temb)).Hidden;
            if (_attentions is not null)
            {
                var attention = _attentions[j];
                var attnInput = hidden;
                hidden = _seam.Run(new BlockCall(_attentionSites[j], attnInput, DownBlock.PassThroughOf(attention)),
                    () => attention.call(attnInput, context)).Hidden;
            }
        }
        if (_upsamplers is not null)
        {
            var input = hidden;
            hidden = _seam.Run(new BlockCall(_upsamplerSite!, input), () => _upsamplers[0].Forward(input, upsampleSize)).Hidden;
        }
        return hidden.MoveToOuterDisposeScope();
    }
}
