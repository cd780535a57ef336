using System.Text.Json;

namespace DiffusionCache.Models.Config;

/// <summary>
/// The <c>config.json</c> of a diffusers <c>UNet2DConditionModel</c> (Stable Diffusion 1.x/2.x and SDXL), with
/// per-block lists already expanded. Property defaults describe Stable Diffusion 1.5; keys missing from a file
/// take diffusers 0.27.2's defaults. Only what we implement is representable;
/// anything else is refused by <see cref="Read"/>.
/// </summary>
public sealed record UNet2DConditionConfig
{
    /// <summary>Channels of the latent sample (<c>in_channels</c>).</summary>
    public int InChannels { get; init; } = 4;
    /// <summary>Channels of the prediction (<c>out_channels</c>).</summary>
    public int OutChannels { get; init; } = 4;
    /// <summary>Latent side the model was trained at (<c>sample_size</c>; 64 = 512 px for SD 1.5);
    /// informative.</summary>
    public int SampleSize { get; init; } = 64;
    /// <summary>Maps the sample from [0, 1] to [-1, 1] (2x - 1) before <c>conv_in</c>
    /// (<c>center_input_sample</c>).</summary>
    public bool CenterInputSample { get; init; }
    /// <summary>Order of the sinusoidal timestep embedding: [cos, sin] when true, [sin, cos] when false
    /// (<c>flip_sin_to_cos</c>).</summary>
    public bool FlipSinToCos { get; init; } = true;
    /// <summary>Frequency shift of the timestep embedding: freq[i] = exp(-ln(10000) · i / (half - freq_shift))
    /// (<c>freq_shift</c>).</summary>
    public int FreqShift { get; init; }
    /// <summary>Down block per level, top first: <c>CrossAttnDownBlock2D</c> or <c>DownBlock2D</c>.</summary>
    public IReadOnlyList<string> DownBlockTypes { get; init; } =
        ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"];
    /// <summary><c>UNetMidBlock2DCrossAttn</c> or null (no mid block).</summary>
    public string? MidBlockType { get; init; } = "UNetMidBlock2DCrossAttn";
    /// <summary>Up block per level, lowest resolution first: <c>CrossAttnUpBlock2D</c> or <c>UpBlock2D</c>.</summary>
    public IReadOnlyList<string> UpBlockTypes { get; init; } =
        ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"];
    /// <summary>Per down block (up blocks use the list reversed): the first attention of each transformer block
    /// attends to the context instead of the tokens (<c>only_cross_attention</c>).</summary>
    public IReadOnlyList<bool> OnlyCrossAttention { get; init; } = [false, false, false, false];
    /// <summary>Channels per level, top first (<c>block_out_channels</c>); each divisible by its head count and by
    /// <see cref="NormNumGroups"/>.</summary>
    public IReadOnlyList<int> BlockOutChannels { get; init; } = [320, 640, 1280, 1280];
    /// <summary>Resnets per down block, per level (<c>layers_per_block</c>); up blocks have one more.</summary>
    public IReadOnlyList<int> LayersPerBlock { get; init; } = [2, 2, 2, 2];
    /// <summary>Padding of the downsamplers' stride-2 conv (<c>downsample_padding</c>); 0 pads right/bottom by one
    /// instead.</summary>
    public int DownsamplePadding { get; init; } = 1;
    /// <summary>Output scale factor of the mid block's resnets: their output is divided by it
    /// (<c>mid_block_scale_factor</c>).</summary>
    public double MidBlockScaleFactor { get; init; } = 1.0;
    /// <summary>Activation of the resnets: always <c>silu</c> (<see cref="Read"/> reads <c>swish</c> as silu and
    /// refuses others).</summary>
    public string ActFn { get; init; } = "silu";
    /// <summary>Null disables <c>conv_norm_out</c>, as in diffusers.</summary>
    public int? NormNumGroups { get; init; } = 32;
    /// <summary>Epsilon of the resnets' GroupNorms and of <c>conv_norm_out</c> (<c>norm_eps</c>).</summary>
    public double NormEps { get; init; } = 1e-5;
    /// <summary>Context width per down block (<c>cross_attention_dim</c>): 768 for SD 1.x, 1024 for SD 2.x, 2048
    /// for SDXL. The model's context width is the first entry.</summary>
    public IReadOnlyList<int> CrossAttentionDim { get; init; } = [768, 768, 768, 768];
    /// <summary>BasicTransformerBlocks in each Transformer2DModel, per down block; up blocks use the list reversed
    /// (<c>transformer_layers_per_block</c>; nested per-layer lists are refused).</summary>
    public IReadOnlyList<int> TransformerLayersPerBlock { get; init; } = [1, 1, 1, 1];
    /// <summary>Heads per down block. diffusers 0.27.2 reads <c>attention_head_dim</c> as the head count when
    /// <c>num_attention_heads</c> is null (a naming quirk kept for SD checkpoints).</summary>
    public IReadOnlyList<int> NumAttentionHeads { get; init; } = [8, 8, 8, 8];
    /// <summary>The transformers' proj_in/proj_out are linear layers rather than 1x1 convolutions (SD 2.x, SDXL;
    /// <c>use_linear_projection</c>).</summary>
    public bool UseLinearProjection { get; init; }
    /// <summary>diffusers' <c>upcast_attention</c>, kept for the config round trip: attention here always
    /// accumulates in float32, so it changes nothing.</summary>
    public bool UpcastAttention { get; init; }
    /// <summary>Classes of the optional class embedding (<c>num_class_embeds</c>); null for none. When set, the
    /// model needs class labels.</summary>
    public int? NumClassEmbeds { get; init; }
    /// <summary>Concatenates the class embedding to the time embedding instead of adding it, which doubles the
    /// width the resnets receive (<c>class_embeddings_concat</c>).</summary>
    public bool ClassEmbeddingsConcat { get; init; }
    /// <summary><c>default</c> (add temb before norm2) or <c>scale_shift</c> (FiLM after norm2).</summary>
    public string ResnetTimeScaleShift { get; init; } = "default";
    /// <summary>Explicit width of the time embedding (<c>time_embedding_dim</c>); null for the default, see
    /// <see cref="TimeEmbedDim"/>.</summary>
    public int? TimeEmbeddingDim { get; init; }
    /// <summary>Kernel size of <c>conv_in</c> (<c>conv_in_kernel</c>); odd, padded to keep the size.</summary>
    public int ConvInKernel { get; init; } = 3;
    /// <summary>Kernel size of <c>conv_out</c> (<c>conv_out_kernel</c>); odd, padded to keep the size.</summary>
    public int ConvOutKernel { get; init; } = 3;
    /// <summary>SDXL's <c>text_time</c> added conditioning (pooled text embeddings and six size/crop ids through
    /// <c>add_time_proj</c> + <c>add_embedding</c>), or null.</summary>
    public string? AdditionEmbedType { get; init; }
    /// <summary>Width of each time id's sinusoidal embedding (<c>add_time_proj</c>).</summary>
    public int? AdditionTimeEmbedDim { get; init; }
    /// <summary>Input width of <c>add_embedding</c>: pooled text width + 6 × <see cref="AdditionTimeEmbedDim"/>.</summary>
    public int? ProjectionClassEmbeddingsInputDim { get; init; }

    /// <summary>Time ids per sample of the <c>text_time</c> conditioning: original h, w, crop top, left, target h, w.</summary>
    public const int TimeIdCount = 6;
    /// <summary>The pooled text embedding width <c>text_time</c> expects.</summary>
    public int? PooledTextDim => AdditionEmbedType is null ? null : ProjectionClassEmbeddingsInputDim - TimeIdCount * AdditionTimeEmbedDim;

    /// <summary>Width of the time embedding (<c>time_embedding</c>'s output): <see cref="TimeEmbeddingDim"/>, or
    /// 4 × the first level's channels.</summary>
    public int TimeEmbedDim => TimeEmbeddingDim ?? BlockOutChannels[0] * 4;
    /// <summary>Width of the embedding the resnets receive: <see cref="TimeEmbedDim"/>, doubled with
    /// <see cref="ClassEmbeddingsConcat"/>.</summary>
    public int BlocksTimeEmbedDim => ClassEmbeddingsConcat ? TimeEmbedDim * 2 : TimeEmbedDim;

    /// <summary>Stable Diffusion 1.5's U-Net.</summary>
    public static UNet2DConditionConfig StableDiffusion15 { get; } = new() { SampleSize = 64 };

    /// <summary>Stable Diffusion 2.1's U-Net (768-v): 1024-d OpenCLIP context, linear projections, heads [5,10,20,20].</summary>
    public static UNet2DConditionConfig StableDiffusion21 { get; } = new()
    {
        SampleSize = 96,
        CrossAttentionDim = [1024, 1024, 1024, 1024],
        NumAttentionHeads = [5, 10, 20, 20],
        UseLinearProjection = true,
        UpcastAttention = true,
    };

    /// <summary>SDXL 1.0 base's U-Net: three levels [320, 640, 1280], 1/2/10 transformer layers, 2048-d context from
    /// two text encoders, text_time added conditioning (1280-d pooled embedding + 6 size ids of 256 each).</summary>
    public static UNet2DConditionConfig StableDiffusionXL { get; } = new()
    {
        SampleSize = 128,
        DownBlockTypes = ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        UpBlockTypes = ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        OnlyCrossAttention = [false, false, false],
        BlockOutChannels = [320, 640, 1280],
        LayersPerBlock = [2, 2, 2],
        CrossAttentionDim = [2048, 2048, 2048],
        TransformerLayersPerBlock = [1, 2, 10],
        NumAttentionHeads = [5, 10, 20],
        UseLinearProjection = true,
        AdditionEmbedType = "text_time",
        AdditionTimeEmbedDim = 256,
        ProjectionClassEmbeddingsInputDim = 2816,
    };

    /// <summary>Reads and validates a <c>config.json</c>; see <see cref="Read"/>.</summary>
    /// <param name="path">The config file.</param>
    /// <exception cref="DiffusionCacheException">The file is missing or not JSON, or <see cref="Read"/> refuses
    /// it.</exception>
    public static UNet2DConditionConfig FromFile(string path)
    {
        var reader = ConfigReader.FromFile(path, out var doc);
        using (doc) return Read(reader);
    }

    /// <summary>Reads a <c>UNet2DConditionModel</c> config strictly, expanding per-block values to lists: unknown
    /// keys, block types and options we do not implement, and inconsistent sizes are refused.</summary>
    /// <param name="r">A reader over the config, not yet read from.</param>
    /// <exception cref="ConfigException">The config is malformed or asks for something not implemented.</exception>
    public static UNet2DConditionConfig Read(ConfigReader r)
    {
        var cls = r.String("_class_name", "UNet2DConditionModel");
        if (cls != "UNet2DConditionModel") throw r.Error($"expected a UNet2DConditionModel config, found '{cls}'");
        var d = new UNet2DConditionConfig();
        var blockOut = r.Ints("block_out_channels", d.BlockOutChannels);
        int n = blockOut.Count;
        var downTypes = r.Strings("down_block_types", d.DownBlockTypes);
        var upTypes = r.Strings("up_block_types", d.UpBlockTypes);
        if (downTypes.Count != n || upTypes.Count != n)
            throw r.Error($"down_block_types ({downTypes.Count}), up_block_types ({upTypes.Count}) and block_out_channels ({n}) must have equal length");
        foreach (var t in downTypes)
            if (t is not ("CrossAttnDownBlock2D" or "DownBlock2D")) throw r.Unsupported("down_block_types", $"\"{t}\"");
        foreach (var t in upTypes)
            if (t is not ("CrossAttnUpBlock2D" or "UpBlock2D")) throw r.Unsupported("up_block_types", $"\"{t}\"");
        var mid = r.String("mid_block_type", d.MidBlockType);
        if (mid is not (null or "UNetMidBlock2DCrossAttn")) throw r.Unsupported("mid_block_type", $"\"{mid}\"");

        var act = r.String("act_fn", "silu")!;
        if (act is not ("silu" or "swish")) throw r.Unsupported("act_fn", $"\"{act}\"");
        var timeShift = r.String("resnet_time_scale_shift", "default")!;
        if (timeShift is not ("default" or "scale_shift")) throw r.Unsupported("resnet_time_scale_shift", $"\"{timeShift}\"");

        var headDim = r.IntOrList("attention_head_dim", n) ?? Enumerable.Repeat(8, n).ToArray();
        var heads = r.IntOrList("num_attention_heads", n) ?? headDim;   // the diffusers quirk, see NumAttentionHeads
        var crossDim = r.IntOrList("cross_attention_dim", n) ?? Enumerable.Repeat(1280, n).ToArray();
        var layers = r.IntOrList("layers_per_block", n) ?? Enumerable.Repeat(2, n).ToArray();
        IReadOnlyList<int> transformerLayers;
        try { transformerLayers = r.IntOrList("transformer_layers_per_block", n) ?? Enumerable.Repeat(1, n).ToArray(); }
        catch (ConfigException) { throw r.Unsupported("transformer_layers_per_block", "nested per-layer lists"); }
        var oca = r.BoolOrList("only_cross_attention", n, out var ocaList);
        IReadOnlyList<bool> onlyCross = ocaList ?? Enumerable.Repeat(oca ?? false, n).ToArray();

        r.RequireNull("reverse_transformer_layers_per_block");
        r.RequireNull("encoder_hid_dim");
        r.RequireNull("encoder_hid_dim_type");
        r.RequireNull("class_embed_type");
        var addition = r.String("addition_embed_type", null);
        if (addition is not (null or "text_time")) throw r.Unsupported("addition_embed_type", $"\"{addition}\"");
        r.RequireNull("time_embedding_act_fn");
        r.RequireNull("timestep_post_act");
        r.RequireNull("time_cond_proj_dim");
        r.RequireNull("cross_attention_norm");
        r.RequireAbsentOr("dual_cross_attention", false, k => r.Bool(k, false));
        r.RequireAbsentOr("time_embedding_type", "positional", k => r.String(k, "positional")!);
        r.RequireAbsentOr("attention_type", "default", k => r.String(k, "default")!);
        r.RequireAbsentOr("resnet_skip_time_act", false, k => r.Bool(k, false));
        r.RequireAbsentOr("resnet_out_scale_factor", 1.0, k => r.Double(k, 1.0));
        r.RequireAbsentOr("mid_block_add_attention", true, k => r.Bool(k, true));
        // Inference-time no-ops: dropout is off in eval; addition_embed_type_num_heads only matters for the "text"
        // addition type (refused above); mid_block_only_cross_attention only affects the SimpleCrossAttn mid block.
        r.Informative("sample_size", "dropout", "addition_embed_type_num_heads", "mid_block_only_cross_attention");

        var config = new UNet2DConditionConfig
        {
            InChannels = r.Int("in_channels", d.InChannels),
            OutChannels = r.Int("out_channels", d.OutChannels),
            SampleSize = r.Int("sample_size", d.SampleSize),
            CenterInputSample = r.Bool("center_input_sample", false),
            FlipSinToCos = r.Bool("flip_sin_to_cos", true),
            FreqShift = r.Int("freq_shift", 0),
            DownBlockTypes = downTypes,
            MidBlockType = mid,
            UpBlockTypes = upTypes,
            OnlyCrossAttention = onlyCross,
            BlockOutChannels = blockOut,
            LayersPerBlock = layers,
            DownsamplePadding = r.Int("downsample_padding", 1),
            MidBlockScaleFactor = r.Double("mid_block_scale_factor", 1.0),
            ActFn = "silu",
            NormNumGroups = r.NullableInt("norm_num_groups", whenAbsent: 32),
            NormEps = r.Double("norm_eps", 1e-5),
            CrossAttentionDim = crossDim,
            TransformerLayersPerBlock = transformerLayers,
            NumAttentionHeads = heads,
            UseLinearProjection = r.Bool("use_linear_projection", false),
            UpcastAttention = r.Bool("upcast_attention", false),
            NumClassEmbeds = r.NullableInt("num_class_embeds"),
            ClassEmbeddingsConcat = r.Bool("class_embeddings_concat", false),
            ResnetTimeScaleShift = timeShift,
            TimeEmbeddingDim = r.NullableInt("time_embedding_dim"),
            ConvInKernel = r.Int("conv_in_kernel", 3),
            ConvOutKernel = r.Int("conv_out_kernel", 3),
            AdditionEmbedType = addition,
            AdditionTimeEmbedDim = r.NullableInt("addition_time_embed_dim"),
            ProjectionClassEmbeddingsInputDim = r.NullableInt("projection_class_embeddings_input_dim"),
        };
        r.EnsureAllRead();
        config.Validate(r);
        return config;
    }

    private void Validate(ConfigReader r)
    {
        for (int i = 0; i < BlockOutChannels.Count; i++)
        {
            if (BlockOutChannels[i] % NumAttentionHeads[i] != 0)
                throw r.Error($"block {i}: {BlockOutChannels[i]} channels are not divisible by {NumAttentionHeads[i]} heads");
            if (NormNumGroups is int g && BlockOutChannels[i] % g != 0)
                throw r.Error($"block {i}: {BlockOutChannels[i]} channels are not divisible by norm_num_groups {g}");
        }
        if (ConvInKernel % 2 == 0 || ConvOutKernel % 2 == 0) throw r.Error("conv_in_kernel and conv_out_kernel must be odd");
        if (AdditionEmbedType == "text_time" && (AdditionTimeEmbedDim is not > 0 || ProjectionClassEmbeddingsInputDim is not int p || p <= TimeIdCount * AdditionTimeEmbedDim))
            throw r.Error("addition_embed_type \"text_time\" needs addition_time_embed_dim > 0 and projection_class_embeddings_input_dim > 6 x addition_time_embed_dim");
    }
}
