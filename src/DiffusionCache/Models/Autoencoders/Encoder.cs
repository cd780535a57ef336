using DiffusionCache.Models.Config;
using DiffusionCache.Models.Layers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using DiffusionCache.Runtime;

namespace DiffusionCache.Models.Autoencoders;

/// <summary>
/// diffusers <c>Encoder</c> (the VAE's, with <c>double_z=True</c>): conv_in → down_blocks → mid_block →
/// GroupNorm → SiLU → conv_out to 2 × latent channels (mean and log-variance, before <c>quant_conv</c>).
/// Parameter names are diffusers' state-dict keys under <c>encoder.</c>.
/// </summary>
public sealed class Encoder : nn.Module<Tensor, Tensor>
{
    private readonly Conv2d _convIn;
    private readonly ModuleList<DownEncoderBlock2D> _downBlocks;
    private readonly VaeMidBlock _midBlock;
    private readonly GroupNorm _convNormOut;
    private readonly Conv2d _convOut;

    /// <summary>Builds the encoder with freshly initialised weights.</summary>
    /// <param name="config">The VAE's config.</param>
    public Encoder(AutoencoderKLConfig config) : base(nameof(Encoder))
    {
        var ch = config.BlockOutChannels;
        int groups = config.NormNumGroups;
        _convIn = nn.Conv2d(config.InChannels, ch[0], 3, padding: 1);
        _downBlocks = nn.ModuleList(Enumerable.Range(0, ch.Count)
            .Select(i => new DownEncoderBlock2D(ch[Math.Max(i - 1, 0)], ch[i], config.LayersPerBlock, groups,
                addDownsample: i < ch.Count - 1))
            .ToArray());
        _midBlock = new VaeMidBlock(ch[^1], groups, config.MidBlockAddAttention);
        _convNormOut = Norms.GroupNorm(groups, ch[^1], Vae.Eps);
        _convOut = nn.Conv2d(ch[^1], 2 * config.LatentChannels, 3, padding: 1);

        register_module("conv_in", _convIn);
        register_module("down_blocks", _downBlocks);
        register_module("mid_block", _midBlock);
        register_module("conv_norm_out", _convNormOut);
        register_module("conv_out", _convOut);
    }

    /// <summary>Children are registered explicitly under diffusers' names. TorchSharp's default would, once this
    /// module is registered in a parent, register every module field again under its C# field name, so that
    /// <c>state_dict()</c> listed each tensor twice.</summary>
    protected override void RegisterComponents() { }

    /// <summary>Encodes without an observer; see <see cref="Forward"/>.</summary>
    /// <param name="image">[B, in_channels, H, W], values in [-1, 1].</param>
    public override Tensor forward(Tensor image) => Forward(image, null);

    /// <summary>Encodes an image into the moments of its latent posterior (before <c>quant_conv</c>).</summary>
    /// <param name="image">[B, in_channels, H, W], values in [-1, 1].</param>
    /// <param name="observe">Called with <c>conv_in</c>, <c>down_blocks.{i}</c> and <c>mid_block</c> outputs; the
    /// tensors belong to this call's dispose scope, so an observer that keeps one clones it.</param>
    /// <returns>[B, 2·latent_channels, H/f, W/f] (mean, then log-variance), f the VAE's down factor; the caller
    /// owns it.</returns>
    public Tensor Forward(Tensor image, Action<string, Tensor>? observe)
    {
        using var scope = NewDisposeScope();
        var h = ConvolutionKernels.Run(_convIn, image);
        observe?.Invoke("conv_in", h);
        for (int i = 0; i < _downBlocks.Count; i++)
        {
            h = _downBlocks[i].forward(h);
            observe?.Invoke($"down_blocks.{i}", h);
        }
        h = _midBlock.forward(h);
        observe?.Invoke("mid_block", h);
        h = ConvolutionKernels.Run(_convOut, nn.functional.silu(_convNormOut.forward(h)));
        return h.MoveToOuterDisposeScope();
    }
}
