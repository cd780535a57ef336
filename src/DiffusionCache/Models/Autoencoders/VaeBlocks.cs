using DiffusionCache.Models.Layers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DiffusionCache.Models.Autoencoders;

// The VAE's blocks are diffusers' DownEncoderBlock2D, UpDecoderBlock2D and UNetMidBlock2D with temb_channels=None:
// the U-Net blocks in Models/Blocks route every call through a caching seam and take a time embedding, neither of
// which the VAE has, so these thin containers compose the same layers directly. All resnets and attentions use
// eps 1e-6 and output_scale_factor 1, as diffusers' Encoder/Decoder build them.

/// <summary>diffusers <c>DownEncoderBlock2D</c>: resnets, then (except in the last block) a Downsample2D that pads
/// right/bottom by one and convolves with stride 2 (<c>downsample_padding=0</c>).</summary>
internal sealed class DownEncoderBlock2D : nn.Module<Tensor, Tensor>
{
    private readonly ModuleList<ResnetBlock2D> _resnets;
    private readonly ModuleList<Downsample2D>? _downsamplers;

    public DownEncoderBlock2D(int inChannels, int outChannels, int layers, int groups, bool addDownsample)
        : base(nameof(DownEncoderBlock2D))
    {
        _resnets = nn.ModuleList(Enumerable.Range(0, layers)
            .Select(j => new ResnetBlock2D(j == 0 ? inChannels : outChannels, outChannels, null, groups, Vae.Eps)).ToArray());
        register_module("resnets", _resnets);
        if (addDownsample)
        {
            _downsamplers = nn.ModuleList(new Downsample2D(outChannels, outChannels, padding: 0));
            register_module("downsamplers", _downsamplers);
        }
    }

    // Explicit registration only, as in every module of the library (see ResnetBlock2D.RegisterComponents).
    protected override void RegisterComponents() { }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        foreach (var resnet in _resnets) x = resnet.forward(x);
        if (_downsamplers is not null) x = _downsamplers[0].forward(x);
        return x.MoveToOuterDisposeScope();
    }
}

/// <summary>diffusers <c>UpDecoderBlock2D</c>: resnets, then (except in the last block) a nearest x2 Upsample2D.</summary>
internal sealed class UpDecoderBlock2D : nn.Module<Tensor, Tensor>
{
    private readonly ModuleList<ResnetBlock2D> _resnets;
    private readonly ModuleList<Upsample2D>? _upsamplers;

    public UpDecoderBlock2D(int inChannels, int outChannels, int layers, int groups, bool addUpsample)
        : base(nameof(UpDecoderBlock2D))
    {
        _resnets = nn.ModuleList(Enumerable.Range(0, layers)
            .Select(j => new ResnetBlock2D(j == 0 ? inChannels : outChannels, outChannels, null, groups, Vae.Eps)).ToArray());
        register_module("resnets", _resnets);
        if (addUpsample)
        {
            _upsamplers = nn.ModuleList(new Upsample2D(outChannels, outChannels));
            register_module("upsamplers", _upsamplers);
        }
    }

    // Explicit registration only, as in every module of the library (see ResnetBlock2D.RegisterComponents).
    protected override void RegisterComponents() { }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        foreach (var resnet in _resnets) x = resnet.forward(x);
        if (_upsamplers is not null) x = _upsamplers[0].forward(x);
        return x.MoveToOuterDisposeScope();
    }
}

/// <summary>diffusers <c>UNetMidBlock2D</c> as the VAE builds it: resnet, single-head spatial self-attention
/// (GroupNorm, residual; diffusers' <c>attention_head_dim</c> = channels), resnet. With
/// <c>mid_block_add_attention</c> false the attention is left out.</summary>
internal sealed class VaeMidBlock : nn.Module<Tensor, Tensor>
{
    private readonly ModuleList<ResnetBlock2D> _resnets;
    private readonly ModuleList<Attention>? _attentions;

    public VaeMidBlock(int channels, int groups, bool addAttention) : base("UNetMidBlock2D")
    {
        _resnets = nn.ModuleList(
            new ResnetBlock2D(channels, channels, null, groups, Vae.Eps),
            new ResnetBlock2D(channels, channels, null, groups, Vae.Eps));
        register_module("resnets", _resnets);
        if (addAttention)
        {
            _attentions = nn.ModuleList(new Attention(new AttentionOptions(channels, Heads: 1, DimHead: channels)
            {
                QkvBias = true,
                GroupNormGroups = groups,
                Eps = Vae.Eps,
                ResidualConnection = true,
            }));
            register_module("attentions", _attentions);
        }
    }

    // Explicit registration only, as in every module of the library (see ResnetBlock2D.RegisterComponents).
    protected override void RegisterComponents() { }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        x = _resnets[0].forward(x);
        if (_attentions is not null) x = _attentions[0].forward(x, null);
        x = _resnets[1].forward(x);
        return x.MoveToOuterDisposeScope();
    }
}

internal static class Vae
{
    /// <summary>diffusers' Encoder and Decoder build every norm with eps 1e-6 (the U-Nets use 1e-5).</summary>
    public const double Eps = 1e-6;
}
