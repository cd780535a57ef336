using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using DiffusionCache.Runtime;

namespace DiffusionCache.Models.Layers;

/// <summary>diffusers <c>Upsample2D</c> with use_conv: nearest-neighbour 2x (or to an explicit size when the
/// input side was not a multiple of the total down factor), then a 3x3 conv.</summary>
public sealed class Upsample2D : nn.Module<Tensor, Tensor>
{
    private readonly Conv2d _conv;

    /// <summary>Builds the layer with freshly initialised weights.</summary>
    /// <param name="channels">Input channels.</param>
    /// <param name="outChannels">Output channels of the conv.</param>
    public Upsample2D(int channels, int outChannels) : base(nameof(Upsample2D))
    {
        _conv = nn.Conv2d(channels, outChannels, 3, stride: 1, padding: 1);
        register_module("conv", _conv);
    }

    /// <summary>Children are registered explicitly under diffusers' names. TorchSharp's default would, once this
    /// module is registered in a parent, register every module field again under its C# field name, so that
    /// <c>state_dict()</c> listed each tensor twice.</summary>
    protected override void RegisterComponents() { }

    /// <summary>Doubles the resolution: [B, channels, H, W] to [B, outChannels, 2H, 2W].</summary>
    /// <param name="x">[B, channels, H, W].</param>
    public override Tensor forward(Tensor x) => Forward(x, null);

    /// <summary>Nearest-neighbour upsampling to <paramref name="outputSize"/> (2x when null), then the conv.</summary>
    /// <param name="x">[B, channels, H, W].</param>
    /// <param name="outputSize">The output [H, W], which diffusers passes when an input side was not a multiple of
    /// the total down factor (the matching skip tensor's size); null for 2x.</param>
    /// <returns>[B, outChannels, H', W'].</returns>
    public Tensor Forward(Tensor x, long[]? outputSize)
    {
        using var up = outputSize is null
            ? nn.functional.interpolate(x, scale_factor: [2.0, 2.0], mode: InterpolationMode.Nearest)
            : nn.functional.interpolate(x, size: outputSize, mode: InterpolationMode.Nearest);
        return ConvolutionKernels.Run(_conv, up);
    }
}
