using DiffusionCache.Models.Blocks;
using DiffusionCache.Models.Config;
using DiffusionCache.Models.Layers;
using DiffusionCache.Models.Seam;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DiffusionCache.Models.UNets;

/// <summary>
/// diffusers <c>UNet2DModel</c> (DDPM family): pixel-space U-Net with spatial self-attention blocks and an optional
/// class embedding; no cross-attention. Parameter names are diffusers' state-dict keys.
/// </summary>
public sealed class UNet2DModel : DiffusionUNet
{
    private readonly UNet2DConfig _c;
    private readonly Conv2d _convIn;
    private readonly Timesteps _timeProj;
    private readonly TimestepEmbedding _timeEmbedding;
    private readonly Embedding? _classEmbedding;
    private readonly ModuleList<DownBlock> _downBlocks;
    private readonly MidBlock _midBlock;
    private readonly ModuleList<UpBlock> _upBlocks;
    private readonly GroupNorm _convNormOut;
    private readonly Conv2d _convOut;
    private readonly BlockSite _convInSite, _timeProjSite, _timeEmbeddingSite;
    private readonly BlockSite? _classEmbeddingSite;
    private readonly UNetParts _parts;

    /// <summary>The validated config the model was built from.</summary>
    public UNet2DConfig Config => _c;
    /// <inheritdoc />
    public override string ClassName => "UNet2DModel";
    /// <inheritdoc />
    public override int InChannels => _c.InChannels;
    /// <inheritdoc />
    public override int OutChannels => _c.OutChannels;
    /// <inheritdoc />
    public override int SampleSize => _c.SampleSize;
    /// <summary>Always null: this family has no cross-attention.</summary>
    public override int? ContextDim => null;
    /// <inheritdoc />
    public override int? NumClassEmbeds => _c.NumClassEmbeds;

    /// <summary>Builds the model with freshly initialised weights, in eval mode, and registers its call sites on
    /// <see cref="DiffusionUNet.Seam"/>. Load weights with <see cref="Loading.UNetLoader"/> or
    /// <see cref="Loading.ComponentLoader"/>.</summary>
    /// <param name="config">A config as <see cref="UNet2DConfig.Read"/> validates it.</param>
    /// <exception cref="DiffusionCacheException"><c>norm_num_groups</c> is null.</exception>
    public UNet2DModel(UNet2DConfig config) : base(nameof(UNet2DModel))
    {
        _c = config;
        var ch = config.BlockOutChannels;
        int n = ch.Count;
        int groups = config.NormNumGroups ?? throw new DiffusionCacheException("UNet2DModel: norm_num_groups must be set");
        int tembCh = config.TimeEmbedDim;

        _convInSite = Seam.Register("conv_in", BlockKind.Stem);
        _timeProjSite = Seam.Register("time_proj", BlockKind.Embedding);
        _timeEmbeddingSite = Seam.Register("time_embedding", BlockKind.Embedding);
        _convIn = nn.Conv2d(config.InChannels, ch[0], 3, padding: 1);
        _timeProj = new Timesteps(ch[0], config.FlipSinToCos, config.FreqShift);
        _timeEmbedding = new TimestepEmbedding(ch[0], tembCh);
        if (config.NumClassEmbeds is int classes)
        {
            _classEmbeddingSite = Seam.Register("class_embedding", BlockKind.Embedding);
            _classEmbedding = nn.Embedding(classes, tembCh);
        }

        var down = new List<DownBlock>();
        int outCh = ch[0];
        for (int i = 0; i < n; i++)
        {
            int inCh = outCh;
            outCh = ch[i];
            bool final = i == n - 1;
            bool attn = config.DownBlockTypes[i] == "AttnDownBlock2D";
            var resnets = Enumerable.Range(0, config.LayersPerBlock)
                .Select(j => Resnet(j == 0 ? inCh : outCh, outCh, 1.0)).ToArray();
            var attentions = attn
                ? Enumerable.Range(0, config.LayersPerBlock).Select(_ => SelfAttention(outCh, groups, 1.0)).ToArray()
                : null;
            var downsampler = final ? null : new Downsample2D(outCh, outCh, config.DownsamplePadding);
            down.Add(new DownBlock(config.DownBlockTypes[i], Seam, i, resnets, attentions, downsampler));
        }

        int midCh = ch[n - 1];
        double midScale = config.MidBlockScaleFactor;
        // diffusers: attention groups default to the resnet groups only with the "default" time-embedding norm.
        int? attnGroups = config.AttnNormNumGroups ?? (config.ResnetTimeScaleShift == "default" ? groups : null);
        _midBlock = new MidBlock("UNetMidBlock2D", Seam, n - 1,
            [Resnet(midCh, midCh, midScale), Resnet(midCh, midCh, midScale)],
            config.AddAttention ? [SelfAttention(midCh, attnGroups, midScale)] : null);

        var up = new List<UpBlock>();
        var rCh = ch.Reverse().ToArray();
        outCh = rCh[0];
        for (int i = 0; i < n; i++)
        {
            bool final = i == n - 1;
            int prevOut = outCh;
            outCh = rCh[i];
            int inCh = rCh[Math.Min(i + 1, n - 1)];
            int layers = config.LayersPerBlock + 1;
            bool attn = config.UpBlockTypes[i] == "AttnUpBlock2D";
            var resnets = Enumerable.Range(0, layers).Select(j =>
                Resnet((j == 0 ? prevOut : outCh) + (j == layers - 1 ? inCh : outCh), outCh, 1.0)).ToArray();
            var attentions = attn ? Enumerable.Range(0, layers).Select(_ => SelfAttention(outCh, groups, 1.0)).ToArray() : null;
            var upsampler = final ? null : new Upsample2D(outCh, outCh);
            up.Add(new UpBlock(config.UpBlockTypes[i], Seam, i, n - 1 - i, resnets, attentions, upsampler));
        }

        _convNormOut = Norms.GroupNorm(groups, ch[0], config.NormEps);
        _convOut = nn.Conv2d(ch[0], config.OutChannels, 3, padding: 1);

        _downBlocks = nn.ModuleList(down.ToArray());
        _upBlocks = nn.ModuleList(up.ToArray());
        register_module("conv_in", _convIn);
        register_module("time_proj", _timeProj);
        register_module("time_embedding", _timeEmbedding);
        if (_classEmbedding is not null) register_module("class_embedding", _classEmbedding);
        register_module("down_blocks", _downBlocks);
        register_module("mid_block", _midBlock);
        register_module("up_blocks", _upBlocks);
        register_module("conv_norm_out", _convNormOut);
        register_module("conv_out", _convOut);
        _parts = new UNetParts(_convIn, _convInSite, _timeProj, _timeProjSite, _timeEmbedding, _timeEmbeddingSite,
            _classEmbedding, _classEmbeddingSite, false, down, _midBlock, up, _convNormOut, _convOut, config.CenterInputSample);
        eval();

        ResnetBlock2D Resnet(int inC, int outC, double osf) =>
            new(inC, outC, tembCh, groups, config.NormEps, osf, config.ResnetTimeScaleShift);

        // UNet2DModel's attention_head_dim is the per-head width; null means a single head.
        nn.Module<Tensor, Tensor?, Tensor> SelfAttention(int channels, int? normGroups, double rescale)
        {
            int dimHead = config.AttentionHeadDim ?? channels;
            return new Attention(new AttentionOptions(channels, channels / dimHead, dimHead)
            {
                QkvBias = true,
                GroupNormGroups = normGroups,
                Eps = config.NormEps,
                ResidualConnection = true,
                RescaleOutputFactor = rescale,
            });
        }
    }

    /// <summary>One denoiser evaluation, diffusers' <c>UNet2DModel.forward(...).sample</c>. Ignores the context;
    /// class labels are required exactly when the model has <c>num_class_embeds</c>. Every block call goes
    /// through <see cref="DiffusionUNet.Seam"/>.</summary>
    /// <param name="input">The sample [B, in_channels, H, W], the timestep and optional class labels.</param>
    /// <returns>The prediction [B, out_channels, H, W]; the caller owns it.</returns>
    /// <exception cref="DiffusionCacheException">The sample has the wrong shape, or class labels are missing or
    /// given when they should not be.</exception>
    public override Tensor Forward(UNetInput input)
    {
        var sample = input.Sample;
        CheckSample(sample, _c.InChannels);
        return Denoise(_parts, input, null);
    }
}
