using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using DiffusionCache.Runtime;

namespace DiffusionCache.Models.Layers;

/// <summary>diffusers <c>Downsample2D</c> with use_conv: a stride-2 3x3 conv (parameter name <c>conv</c>).
/// With padding 0 diffusers pads right/bottom by one first.</summary>
public sealed class Downsample2D : nn.Module<Tensor, Tensor>
{
    private readonly Conv2d _conv;
    private readonly int _padding;

    /// <summary>Builds the layer with freshly initialised weights.</summary>
    /// <param name="channels">Input channels.</param>
    /// <param name="outChannels">Output channels.</param>
    /// <param name="padding">diffusers' <c>downsample_padding</c>: the conv's padding on every side; 0 pads
    /// right/bottom by one instead (the VAE's form).</param>
    public Downsample2D(int channels, int outChannels, int padding) : base(nameof(Downsample2D))
    {
        _padding = padding;
        _conv = nn.Conv2d(channels, outChannels, 3, stride: 2, padding: padding);
        register_module("conv", _conv);
    }

    /// <summary>Children are registered explicitly under diffusers' names. TorchSharp's default would, once this
    /// module is registered in a parent, register every module field again under its C# field name, so that
    /// <c>state_dict()</c> listed each tensor twice.</summary>
    protected override void RegisterComponents() { }

    /// <summary>Halves the resolution.</summary>
    /// <param name="x">[B, channels, H, W].</param>
    /// <returns>[B, outChannels, H/2, W/2] (odd sides round up with padding 1, down with padding 0).</returns>
    public override Tensor forward(Tensor x)
    {
        if (_padding != 0) return ConvolutionKernels.Run(_conv, x);
        using var padded = nn.functional.pad(x, [0, 1, 0, 1]);
        return ConvolutionKernels.Run(_conv, padded);
    }
}
