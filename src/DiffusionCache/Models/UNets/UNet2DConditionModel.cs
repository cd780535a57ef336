using DiffusionCache.Models.Blocks;
using DiffusionCache.Models.Config;
using DiffusionCache.Models.Layers;
using DiffusionCache.Models.Seam;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DiffusionCache.Models.UNets;

/// <summary>
/// diffusers <c>UNet2DConditionModel</c> (Stable Diffusion 1.x/2.x and SDXL): conv_in, sinusoidal time embedding
/// (+ class embedding, + SDXL's text_time embedding of pooled text and size/crop ids), CrossAttn/plain down blocks, a cross-attention mid block, up blocks consuming the skips,
/// GroupNorm-SiLU-conv_out. Parameter names are diffusers' state-dict keys.
/// </summary>
public sealed class UNet2DConditionModel : DiffusionUNet
{
    private readonly UNet2DConditionConfig _c;
    private readonly Conv2d _convIn;
    private readonly Timesteps _timeProj;
    private readonly TimestepEmbedding _timeEmbedding;
    private readonly Embedding? _classEmbedding;
    private readonly ModuleList<DownBlock> _downBlocks;
    private readonly MidBlock? _midBlock;
    private readonly ModuleList<UpBlock> _upBlocks;
    private readonly GroupNorm? _convNormOut;
    private readonly Conv2d _convOut;
    private readonly BlockSite _convInSite, _timeProjSite, _timeEmbeddingSite;
    private readonly BlockSite? _classEmbeddingSite;
    private readonly Timesteps? _addTimeProj;
    private readonly TimestepEmbedding? _addEmbedding;
    private readonly UNetParts _parts;

    /// <summary>The validated config the model was built from.</summary>
    public UNet2DConditionConfig Config => _c;
    /// <inheritdoc />
    public override string ClassName => "UNet2DConditionModel";
    /// <inheritdoc />
    public override int InChannels => _c.InChannels;
    /// <inheritdoc />
    public override int OutChannels => _c.OutChannels;
    /// <inheritdoc />
    public override int SampleSize => _c.SampleSize;
    /// <inheritdoc />
    public override int? ContextDim => _c.CrossAttentionDim[0];
    /// <inheritdoc />
    public override int? NumClassEmbeds => _c.NumClassEmbeds;
    /// <summary>The pooled text embedding width of SDXL's added conditioning; null when the model has none.</summary>
    public int? PooledTextDim => _c.PooledTextDim;
    /// <summary>The down blocks (<c>down_blocks.i</c>), top level first; a new array on each call.</summary>
    public IReadOnlyList<DownBlock> DownBlocks => _downBlocks.ToArray();
    /// <summary>The up blocks (<c>up_blocks.i</c>), lowest resolution first; a new array on each call.</summary>
    public IReadOnlyList<UpBlock> UpBlocks => _upBlocks.ToArray();

    /// <summary>Builds the model with freshly initialised weights, in eval mode, and registers its call sites on
    /// <see cref="DiffusionUNet.Seam"/>. Load weights with <see cref="Loading.UNetLoader"/> or
    /// <see cref="Loading.ComponentLoader"/>.</summary>
    /// <param name="config">A config as <see cref="UNet2DConditionConfig.Read"/> validates it.</param>
    /// <exception cref="DiffusionCacheException"><c>norm_num_groups</c> is null (the blocks need groups).</exception>
    public UNet2DConditionModel(UNet2DConditionConfig config) : base(nameof(UNet2DConditionModel))
    {
        _c = config;
        var ch = config.BlockOutChannels;
        int n = ch.Count;
        int groups = config.NormNumGroups ?? throw new DiffusionCacheException(
            "UNet2DConditionModel: norm_num_groups null is only supported by diffusers for conv_norm_out; blocks need groups");
        int tembCh = config.BlocksTimeEmbedDim;

        _convInSite = Seam.Register("conv_in", BlockKind.Stem);
        _timeProjSite = Seam.Register("time_proj", BlockKind.Embedding);
        _timeEmbeddingSite = Seam.Register("time_embedding", BlockKind.Embedding);
        _convIn = nn.Conv2d(config.InChannels, ch[0], config.ConvInKernel, padding: (config.ConvInKernel - 1) / 2);
        _timeProj = new Timesteps(ch[0], config.FlipSinToCos, config.FreqShift);
        _timeEmbedding = new TimestepEmbedding(ch[0], config.TimeEmbedDim);
        if (config.NumClassEmbeds is int classes)
        {
            _classEmbeddingSite = Seam.Register("class_embedding", BlockKind.Embedding);
            _classEmbedding = nn.Embedding(classes, config.TimeEmbedDim);
        }
        AddedEmbedding? added = null;
        if (config.AdditionEmbedType == "text_time")
        {
            _addTimeProj = new Timesteps(config.AdditionTimeEmbedDim!.Value, config.FlipSinToCos, config.FreqShift);
            _addEmbedding = new TimestepEmbedding(config.ProjectionClassEmbeddingsInputDim!.Value, config.TimeEmbedDim);
            added = new AddedEmbedding(_addTimeProj, Seam.Register("add_time_proj", BlockKind.Embedding),
                _addEmbedding, Seam.Register("add_embedding", BlockKind.Embedding));
        }

        var down = new List<DownBlock>();
        int outCh = ch[0];
        for (int i = 0; i < n; i++)
        {
            int inCh = outCh;
            outCh = ch[i];
            bool final = i == n - 1;
            bool cross = config.DownBlockTypes[i] == "CrossAttnDownBlock2D";
            int layers = config.LayersPerBlock[i];
            var resnets = Enumerable.Range(0, layers)
                .Select(j => Resnet(j == 0 ? inCh : outCh, outCh, tembCh, 1.0)).ToArray();
            var attentions = cross
                ? Enumerable.Range(0, layers).Select(_ => Transformer(outCh, i, config.NumAttentionHeads[i],
                    config.CrossAttentionDim[i], config.OnlyCrossAttention[i])).ToArray()
                : null;
            var downsampler = final ? null : new Downsample2D(outCh, outCh, config.DownsamplePadding);
            down.Add(new DownBlock(config.DownBlockTypes[i], Seam, i, resnets, attentions, downsampler));
        }

        if (config.MidBlockType is not null)
        {
            int midCh = ch[n - 1];
            var resnets = new[] { Resnet(midCh, midCh, tembCh, config.MidBlockScaleFactor), Resnet(midCh, midCh, tembCh, config.MidBlockScaleFactor) };
            var attentions = new[] { Transformer(midCh, n - 1, config.NumAttentionHeads[n - 1], config.CrossAttentionDim[n - 1], false) };
            _midBlock = new MidBlock(config.MidBlockType, Seam, n - 1, resnets, attentions);
        }

        var up = new List<UpBlock>();
        var rCh = ch.Reverse().ToArray();
        var rHeads = config.NumAttentionHeads.Reverse().ToArray();
        var rLayers = config.LayersPerBlock.Reverse().ToArray();
        var rCross = config.CrossAttentionDim.Reverse().ToArray();
        var rTransformerLayers = config.TransformerLayersPerBlock.Reverse().ToArray();
        var rOnlyCross = config.OnlyCrossAttention.Reverse().ToArray();
        outCh = rCh[0];
        for (int i = 0; i < n; i++)
        {
            bool final = i == n - 1;
            int prevOut = outCh;
            outCh = rCh[i];
            int inCh = rCh[Math.Min(i + 1, n - 1)];
            int layers = rLayers[i] + 1;
            bool cross = config.UpBlockTypes[i] == "CrossAttnUpBlock2D";
            var resnets = Enumerable.Range(0, layers).Select(j =>
            {
                int skipCh = j == layers - 1 ? inCh : outCh;
                int resIn = j == 0 ? prevOut : outCh;
                return Resnet(resIn + skipCh, outCh, tembCh, 1.0);
            }).ToArray();
            var attentions = cross
                ? Enumerable.Range(0, layers).Select(_ => (nn.Module<Tensor, Tensor?, Tensor>)new Transformer2DModel(outCh, rHeads[i],
                    outCh / rHeads[i], rTransformerLayers[i], rCross[i], groups, config.UseLinearProjection, rOnlyCross[i])).ToArray()
                : null;
            var upsampler = final ? null : new Upsample2D(outCh, outCh);
            up.Add(new UpBlock(config.UpBlockTypes[i], Seam, i, n - 1 - i, resnets, attentions, upsampler));
        }

        if (config.NormNumGroups is int g) _convNormOut = Norms.GroupNorm(g, ch[0], config.NormEps);
        _convOut = nn.Conv2d(ch[0], config.OutChannels, config.ConvOutKernel, padding: (config.ConvOutKernel - 1) / 2);

        _downBlocks = nn.ModuleList(down.ToArray());
        _upBlocks = nn.ModuleList(up.ToArray());
        register_module("conv_in", _convIn);
        register_module("time_proj", _timeProj);
        register_module("time_embedding", _timeEmbedding);
        if (_classEmbedding is not null) register_module("class_embedding", _classEmbedding);
        if (_addTimeProj is not null) register_module("add_time_proj", _addTimeProj);
        if (_addEmbedding is not null) register_module("add_embedding", _addEmbedding);
        register_module("down_blocks", _downBlocks);
        if (_midBlock is not null) register_module("mid_block", _midBlock);
        register_module("up_blocks", _upBlocks);
        if (_convNormOut is not null) register_module("conv_norm_out", _convNormOut);
        register_module("conv_out", _convOut);
        _parts = new UNetParts(_convIn, _convInSite, _timeProj, _timeProjSite, _timeEmbedding, _timeEmbeddingSite,
            _classEmbedding, _classEmbeddingSite, config.ClassEmbeddingsConcat, down, _midBlock, up, _convNormOut, _convOut,
            config.CenterInputSample, added);
        eval();

        ResnetBlock2D Resnet(int inC, int outC, int temb, double osf) =>
            new(inC, outC, temb, groups, config.NormEps, osf, config.ResnetTimeScaleShift);

        nn.Module<Tensor, Tensor?, Tensor> Transformer(int channels, int block, int heads, int crossDim, bool onlyCross) =>
            new Transformer2DModel(channels, heads, channels / heads, config.TransformerLayersPerBlock[block], crossDim,
                groups, config.UseLinearProjection, onlyCross);
    }

    /// <summary>An input of zeros of the shapes this model takes (timestep 500), on its device and in its type: for
    /// tracing, MAC counting and benchmarks. Models with <c>text_time</c> conditioning also get zero pooled text
    /// embeddings and time ids.</summary>
    /// <param name="batch">Batch size B.</param>
    /// <param name="height">Sample height (latent pixels).</param>
    /// <param name="width">Sample width (latent pixels).</param>
    /// <param name="contextLength">Context tokens L.</param>
    public override UNetInput ZeroInput(int batch, int height, int width, int contextLength = 77)
    {
        var input = base.ZeroInput(batch, height, width, contextLength);
        if (_c.PooledTextDim is not int pooled) return input;
        var p = parameters().First();
        return input with
        {
            TextEmbeds = zeros([batch, pooled], p.dtype, p.device),
            TimeIds = zeros([batch, UNet2DConditionConfig.TimeIdCount], ScalarType.Float32, p.device),
        };
    }

    /// <summary>One denoiser evaluation, diffusers' <c>UNet2DConditionModel.forward(...).sample</c>. Requires
    /// <see cref="UNetInput.Context"/> [B, L, cross_attention_dim]; with <c>text_time</c> conditioning (SDXL) also
    /// <see cref="UNetInput.TextEmbeds"/> [B, <see cref="PooledTextDim"/>] and <see cref="UNetInput.TimeIds"/>
    /// [B, 6]. Every block call goes through <see cref="DiffusionUNet.Seam"/>.</summary>
    /// <param name="input">The sample [B, in_channels, H, W], timestep and conditioning.</param>
    /// <returns>The prediction [B, out_channels, H, W]; the caller owns it.</returns>
    /// <exception cref="DiffusionCacheException">A shape does not fit or required conditioning is
    /// missing.</exception>
    public override Tensor Forward(UNetInput input)
    {
        var sample = input.Sample;
        CheckSample(sample, _c.InChannels);
        var context = input.Context ?? throw new DiffusionCacheException("UNet2DConditionModel needs encoder_hidden_states (context)");
        if (context.dim() != 3 || context.shape[0] != sample.shape[0] || context.shape[2] != _c.CrossAttentionDim[0])
            throw new DiffusionCacheException(
                $"context must be [{sample.shape[0]}, L, {_c.CrossAttentionDim[0]}], got [{string.Join(",", context.shape)}]");
        if (_c.PooledTextDim is int pooled)
        {
            long b = sample.shape[0];
            if (input.TextEmbeds is not { } te || te.dim() != 2 || te.shape[0] != b || te.shape[1] != pooled)
                throw new DiffusionCacheException($"text_embeds must be [{b}, {pooled}], got {Shape(input.TextEmbeds)}");
            if (input.TimeIds is not { } ids || ids.dim() != 2 || ids.shape[0] != b || ids.shape[1] != UNet2DConditionConfig.TimeIdCount)
                throw new DiffusionCacheException($"time_ids must be [{b}, {UNet2DConditionConfig.TimeIdCount}] (original h, w, crop top, left, target h, w), got {Shape(input.TimeIds)}");
        }
        return Denoise(_parts, input, context);
    }

    private static string Shape(Tensor? t) => t is null ? "none" : $"[{string.Join(",", t.shape)}]";
}
