namespace DiffusionCache.Models.Config;

/// <summary>
/// The <c>config.json</c> of a diffusers <c>UNet2DModel</c> (DDPM family: pixel-space, self-attention only).
/// Keys missing from a file take diffusers 0.27.2's defaults.
/// </summary>
public sealed record UNet2DConfig
{
    /// <summary>Channels of the sample (<c>in_channels</c>; 3 for RGB images).</summary>
    public int InChannels { get; init; } = 3;
    /// <summary>Channels of the prediction (<c>out_channels</c>).</summary>
    public int OutChannels { get; init; } = 3;
    /// <summary>Image side the model was trained at (<c>sample_size</c>); informative.</summary>
    public int SampleSize { get; init; } = 32;
    /// <summary>Maps the sample from [0, 1] to [-1, 1] (2x - 1) before <c>conv_in</c>
    /// (<c>center_input_sample</c>).</summary>
    public bool CenterInputSample { get; init; }
    /// <summary>Order of the sinusoidal timestep embedding: [cos, sin] when true, [sin, cos] when false
    /// (<c>flip_sin_to_cos</c>).</summary>
    public bool FlipSinToCos { get; init; } = true;
    /// <summary>Frequency shift of the timestep embedding: freq[i] = exp(-ln(10000) · i / (half - freq_shift))
    /// (<c>freq_shift</c>).</summary>
    public int FreqShift { get; init; }
    /// <summary>Down block per level, top first: <c>DownBlock2D</c> or <c>AttnDownBlock2D</c>.</summary>
    public IReadOnlyList<string> DownBlockTypes { get; init; } = ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"];
    /// <summary>Up block per level, lowest resolution first: <c>UpBlock2D</c> or <c>AttnUpBlock2D</c>.</summary>
    public IReadOnlyList<string> UpBlockTypes { get; init; } = ["AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"];
    /// <summary>Channels per level, top first (<c>block_out_channels</c>); each divisible by
    /// <see cref="AttentionHeadDim"/> when that is set.</summary>
    public IReadOnlyList<int> BlockOutChannels { get; init; } = [224, 448, 672, 896];
    /// <summary>Resnets per down block, the same at every level (<c>layers_per_block</c>); up blocks have one
    /// more.</summary>
    public int LayersPerBlock { get; init; } = 2;
    /// <summary>Output scale factor of the mid block's resnets and attention: their outputs are divided by it
    /// (<c>mid_block_scale_factor</c>).</summary>
    public double MidBlockScaleFactor { get; init; } = 1.0;
    /// <summary>Padding of the downsamplers' stride-2 conv (<c>downsample_padding</c>); 0 pads right/bottom by one
    /// instead.</summary>
    public int DownsamplePadding { get; init; } = 1;
    /// <summary>Per-head dimension here (unlike UNet2DConditionModel); null means one head per block.</summary>
    public int? AttentionHeadDim { get; init; } = 8;
    /// <summary>Groups of the GroupNorms of the resnets, the down and up blocks' attentions and
    /// <c>conv_norm_out</c> (<c>norm_num_groups</c>); <see cref="UNets.UNet2DModel"/> requires it to be set.</summary>
    public int? NormNumGroups { get; init; } = 32;
    /// <summary>Groups of the mid block attention's GroupNorm (<c>attn_norm_num_groups</c>); when null, diffusers'
    /// rule applies: <see cref="NormNumGroups"/> with the <c>default</c> time-embedding norm, otherwise no
    /// GroupNorm.</summary>
    public int? AttnNormNumGroups { get; init; }
    /// <summary>Epsilon of every GroupNorm (<c>norm_eps</c>).</summary>
    public double NormEps { get; init; } = 1e-5;
    /// <summary><c>default</c> (add the time embedding before norm2) or <c>scale_shift</c> (FiLM after norm2)
    /// (<c>resnet_time_scale_shift</c>).</summary>
    public string ResnetTimeScaleShift { get; init; } = "default";
    /// <summary>Whether the mid block has its self-attention (<c>add_attention</c>).</summary>
    public bool AddAttention { get; init; } = true;
    /// <summary>Classes of the optional class embedding, added to the time embedding (<c>num_class_embeds</c>);
    /// null for none. When set, the model needs class labels.</summary>
    public int? NumClassEmbeds { get; init; }

    /// <summary>Width of the time embedding: 4 × the first level's channels.</summary>
    public int TimeEmbedDim => BlockOutChannels[0] * 4;

    /// <summary>Reads and validates a <c>config.json</c>; see <see cref="Read"/>.</summary>
    /// <param name="path">The config file.</param>
    /// <exception cref="DiffusionCacheException">The file is missing or not JSON, or <see cref="Read"/> refuses
    /// it.</exception>
    public static UNet2DConfig FromFile(string path)
    {
        var reader = ConfigReader.FromFile(path, out var doc);
        using (doc) return Read(reader);
    }

    /// <summary>Reads a <c>UNet2DModel</c> config strictly: unknown keys, other block types, time embeddings,
    /// samplers or class embedding types are refused.</summary>
    /// <param name="r">A reader over the config, not yet read from.</param>
    /// <exception cref="ConfigException">The config is malformed or asks for something not implemented.</exception>
    public static UNet2DConfig Read(ConfigReader r)
    {
        var cls = r.String("_class_name", "UNet2DModel");
        if (cls != "UNet2DModel") throw r.Error($"expected a UNet2DModel config, found '{cls}'");
        var d = new UNet2DConfig();
        var blockOut = r.Ints("block_out_channels", d.BlockOutChannels);
        var downTypes = r.Strings("down_block_types", d.DownBlockTypes);
        var upTypes = r.Strings("up_block_types", d.UpBlockTypes);
        if (downTypes.Count != blockOut.Count || upTypes.Count != blockOut.Count)
            throw r.Error("down_block_types, up_block_types and block_out_channels must have equal length");
        foreach (var t in downTypes)
            if (t is not ("DownBlock2D" or "AttnDownBlock2D")) throw r.Unsupported("down_block_types", $"\"{t}\"");
        foreach (var t in upTypes)
            if (t is not ("UpBlock2D" or "AttnUpBlock2D")) throw r.Unsupported("up_block_types", $"\"{t}\"");
        var act = r.String("act_fn", "silu")!;
        if (act is not ("silu" or "swish")) throw r.Unsupported("act_fn", $"\"{act}\"");
        var timeShift = r.String("resnet_time_scale_shift", "default")!;
        if (timeShift is not ("default" or "scale_shift")) throw r.Unsupported("resnet_time_scale_shift", $"\"{timeShift}\"");
        r.RequireAbsentOr("time_embedding_type", "positional", k => r.String(k, "positional")!);
        r.RequireAbsentOr("downsample_type", "conv", k => r.String(k, "conv")!);
        r.RequireAbsentOr("upsample_type", "conv", k => r.String(k, "conv")!);
        r.RequireNull("class_embed_type");
        // num_train_timesteps only feeds the Fourier/learned time embeddings, refused above; dropout is off in eval.
        r.Informative("sample_size", "dropout", "num_train_timesteps");

        var config = new UNet2DConfig
        {
            InChannels = r.Int("in_channels", d.InChannels),
            OutChannels = r.Int("out_channels", d.OutChannels),
            SampleSize = r.Int("sample_size", d.SampleSize),
            CenterInputSample = r.Bool("center_input_sample", false),
            FlipSinToCos = r.Bool("flip_sin_to_cos", true),
            FreqShift = r.Int("freq_shift", 0),
            DownBlockTypes = downTypes,
            UpBlockTypes = upTypes,
            BlockOutChannels = blockOut,
            LayersPerBlock = r.Int("layers_per_block", 2),
            MidBlockScaleFactor = r.Double("mid_block_scale_factor", 1.0),
            DownsamplePadding = r.Int("downsample_padding", 1),
            AttentionHeadDim = r.NullableInt("attention_head_dim", whenAbsent: 8),
            NormNumGroups = r.NullableInt("norm_num_groups", whenAbsent: 32),
            AttnNormNumGroups = r.NullableInt("attn_norm_num_groups"),
            NormEps = r.Double("norm_eps", 1e-5),
            ResnetTimeScaleShift = timeShift,
            AddAttention = r.Bool("add_attention", true),
            NumClassEmbeds = r.NullableInt("num_class_embeds"),
        };
        r.EnsureAllRead();
        foreach (int c in blockOut)
            if (config.AttentionHeadDim is int hd && c % hd != 0)
                throw r.Error($"{c} channels are not divisible by attention_head_dim {hd}");
        return config;
    }
}
