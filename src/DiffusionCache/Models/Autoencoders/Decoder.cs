using DiffusionCache.Models.Config;
using DiffusionCache.Models.Layers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using DiffusionCache.Runtime;

namespace DiffusionCache.Models.Autoencoders;

/// <summary>
/// diffusers <c>Decoder</c> (group-norm form): conv_in → mid_block → up_blocks (reversed channels, one resnet more
/// than the encoder's blocks) → GroupNorm → SiLU → conv_out. Parameter names are diffusers' state-dict keys under
/// <c>decoder.</c>.
/// </summary>
public sealed class Decoder : nn.Module<Tensor, Tensor>
{
    private readonly Conv2d _convIn;
    private readonly VaeMidBlock _midBlock;
    private readonly ModuleList<UpDecoderBlock2D> _upBlocks;
    private readonly GroupNorm _convNormOut;
    private readonly Conv2d _convOut;

    /// <summary>Builds the decoder with freshly initialised weights.</summary>
    /// <param name="config">The VAE's config.</param>
    public Decoder(AutoencoderKLConfig config) : base(nameof(Decoder))
    {
        var rev = config.BlockOutChannels.Reverse().ToArray();
        int groups = config.NormNumGroups;
        _convIn = nn.Conv2d(config.LatentChannels, rev[0], 3, padding: 1);
        _midBlock = new VaeMidBlock(rev[0], groups, config.MidBlockAddAttention);
        _upBlocks = nn.ModuleList(Enumerable.Range(0, rev.Length)
            .Select(i => new UpDecoderBlock2D(rev[Math.Max(i - 1, 0)], rev[i], config.LayersPerBlock + 1, groups,
                addUpsample: i < rev.Length - 1))
            .ToArray());
        _convNormOut = Norms.GroupNorm(groups, rev[^1], Vae.Eps);
        _convOut = nn.Conv2d(rev[^1], config.OutChannels, 3, padding: 1);

        register_module("conv_in", _convIn);
        register_module("mid_block", _midBlock);
        register_module("up_blocks", _upBlocks);
        register_module("conv_norm_out", _convNormOut);
        register_module("conv_out", _convOut);
    }

    /// <summary>Children are registered explicitly under diffusers' names. TorchSharp's default would, once this
    /// module is registered in a parent, register every module field again under its C# field name, so that
    /// <c>state_dict()</c> listed each tensor twice.</summary>
    protected override void RegisterComponents() { }

    /// <summary>Decodes without an observer; see <see cref="Forward"/>.</summary>
    /// <param name="latents">[B, latent_channels, h, w], after <c>post_quant_conv</c>.</param>
    public override Tensor forward(Tensor latents) => Forward(latents, null);

    /// <summary>Decodes latents into an image (not clamped).</summary>
    /// <param name="latents">[B, latent_channels, h, w], after <c>post_quant_conv</c>.</param>
    /// <param name="observe">Called with <c>conv_in</c>, <c>mid_block</c> and <c>up_blocks.{i}</c> outputs; the
    /// tensors belong to this call's dispose scope, so an observer that keeps one clones it.</param>
    /// <returns>[B, out_channels, h·f, w·f], f the VAE's down factor; the caller owns it.</returns>
    public Tensor Forward(Tensor latents, Action<string, Tensor>? observe)
    {
        using var scope = NewDisposeScope();
        var h = ConvolutionKernels.Run(_convIn, latents);
        observe?.Invoke("conv_in", h);
        // diffusers casts the mid block's output to the up blocks' dtype here; the whole model has one dtype.
        h = _midBlock.forward(h);
        observe?.Invoke("mid_block", h);
        for (int i = 0; i < _upBlocks.Count; i++)
        {
            h = _upBlocks[i].forward(h);
            observe?.Invoke($"up_blocks.{i}", h);
        }
        h = ConvolutionKernels.Run(_convOut, nn.functional.silu(_convNormOut.forward(h)));
        return h.MoveToOuterDisposeScope();
    }
}
