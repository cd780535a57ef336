using DiffusionCache.Models.Config;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using DiffusionCache.Runtime;

namespace DiffusionCache.Models.Autoencoders;

/// <summary>
/// diffusers <c>AutoencoderKL</c> (0.27.2 layout): <see cref="Encode"/> = encoder → <c>quant_conv</c> → diagonal
/// Gaussian; <see cref="Decode"/> = <c>post_quant_conv</c> → decoder. Neither applies <see cref="ScalingFactor"/>:
/// pipelines multiply encoded latents by it and divide latents by it before decoding. Parameter names are diffusers'
/// state-dict keys. No tiling or slicing.
/// </summary>
public sealed class AutoencoderKL : nn.Module
{
    private readonly AutoencoderKLConfig _c;
    private readonly Encoder _encoder;
    private readonly Decoder _decoder;
    private readonly Conv2d? _quantConv;
    private readonly Conv2d? _postQuantConv;

    /// <summary>The validated config the model was built from.</summary>
    public AutoencoderKLConfig Config => _c;
    /// <summary>diffusers' <c>scaling_factor</c> (0.18215 for SD 1.x/2.x): pipelines multiply encoded latents by
    /// it and divide latents by it before <see cref="Decode"/>; this class never applies it.</summary>
    public double ScalingFactor => _c.ScalingFactor;
    /// <summary>Channels of the latents (<c>latent_channels</c>; 4 for Stable Diffusion).</summary>
    public int LatentChannels => _c.LatentChannels;
    /// <summary>Image side / latent side.</summary>
    public int DownFactor => _c.DownFactor;

    /// <summary>
    /// Optional observer of named intermediates, for parity checks and debugging: <c>encoder.conv_in</c>,
    /// <c>encoder.down_blocks.{i}</c>, <c>encoder.mid_block</c>, <c>encoder.output</c>, <c>quant_conv</c> (the
    /// moments), <c>post_quant_conv</c>, <c>decoder.conv_in</c>, <c>decoder.mid_block</c>,
    /// <c>decoder.up_blocks.{i}</c>. Tensors belong to the call's dispose scope: an observer that keeps one clones
    /// it. A model without quant_conv/post_quant_conv reports nothing under those names.
    /// </summary>
    public Action<string, Tensor>? Observer { get; set; }

    /// <summary>Builds the VAE with freshly initialised weights, in eval mode. Load weights with
    /// <see cref="Loading.AutoencoderLoader"/>.</summary>
    /// <param name="config">A config as <see cref="AutoencoderKLConfig.Read"/> validates it.</param>
    /// <exception cref="ArgumentException">The config has no blocks or fewer than one resnet per block.</exception>
    public AutoencoderKL(AutoencoderKLConfig config) : base(nameof(AutoencoderKL))
    {
        if (config.BlockOutChannels.Count == 0 || config.LayersPerBlock < 1)
            throw new ArgumentException("an AutoencoderKL needs at least one block and one resnet per block", nameof(config));
        _c = config;
        _encoder = new Encoder(config);
        _decoder = new Decoder(config);
        int latent = config.LatentChannels;
        if (config.UseQuantConv) _quantConv = nn.Conv2d(2 * latent, 2 * latent, 1L);
        if (config.UsePostQuantConv) _postQuantConv = nn.Conv2d(latent, latent, 1L);

        register_module("encoder", _encoder);
        register_module("decoder", _decoder);
        if (_quantConv is not null) register_module("quant_conv", _quantConv);
        if (_postQuantConv is not null) register_module("post_quant_conv", _postQuantConv);
        eval();
    }

    /// <summary>Children are registered explicitly under diffusers' names. TorchSharp's default would, once this
    /// module is registered in a parent, register every module field again under its C# field name, so that
    /// <c>state_dict()</c> listed each tensor twice.</summary>
    protected override void RegisterComponents() { }

    /// <summary><c>encode(image).latent_dist</c>: the posterior over latents, [B, latent, H/f, W/f] each.</summary>
    /// <param name="image">[B, in_channels, H, W], values in [-1, 1].</param>
    /// <returns>The posterior; the caller owns it (dispose it).</returns>
    /// <exception cref="DiffusionCacheException"><paramref name="image"/> is not [B, in_channels, H, W].</exception>
    public DiagonalGaussian Encode(Tensor image)
    {
        CheckInput(image, _c.InChannels, "image");
        var observe = Observer;
        using var scope = NewDisposeScope();
        var h = _encoder.Forward(image, Prefixed(observe, "encoder."));
        observe?.Invoke("encoder.output", h);
        var moments = h;
        if (_quantConv is not null)
        {
            moments = ConvolutionKernels.Run(_quantConv, h);
            observe?.Invoke("quant_conv", moments);
        }
        var gaussian = DiagonalGaussian.FromMoments(moments);
        gaussian.Mean.MoveToOuterDisposeScope();
        gaussian.LogVar.MoveToOuterDisposeScope();
        return gaussian;
    }

    /// <summary><c>decode(latents).sample</c>: the raw image (not clamped), [B, out_channels, H·f, W·f].</summary>
    /// <param name="latents">[B, latent_channels, h, w], already divided by <see cref="ScalingFactor"/>.</param>
    /// <returns>The image; the caller owns it.</returns>
    /// <exception cref="DiffusionCacheException"><paramref name="latents"/> is not
    /// [B, latent_channels, h, w].</exception>
    public Tensor Decode(Tensor latents)
    {
        CheckInput(latents, _c.LatentChannels, "latents");
        var observe = Observer;
        using var scope = NewDisposeScope();
        var z = latents;
        if (_postQuantConv is not null)
        {
            z = ConvolutionKernels.Run(_postQuantConv, latents);
            observe?.Invoke("post_quant_conv", z);
        }
        return _decoder.Forward(z, Prefixed(observe, "decoder.")).MoveToOuterDisposeScope();
    }

    private static Action<string, Tensor>? Prefixed(Action<string, Tensor>? observe, string prefix) =>
        observe is null ? null : (name, t) => observe(prefix + name, t);

    private static void CheckInput(Tensor t, int channels, string what)
    {
        if (t.dim() != 4 || t.shape[1] != channels)
            throw new DiffusionCacheException($"{what} must be [B, {channels}, H, W], got [{string.Join(",", t.shape)}]");
    }
}
