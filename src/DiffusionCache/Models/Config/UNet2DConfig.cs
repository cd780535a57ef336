namespace DiffusionCache.Models.Config;

/// <summary>
/// The <c>config.json</c> of a diffusers <c>UNet2DModel</c> (DDPM family: pixel-space, self-attention only).
/// Keys missing from a file take diffusers 0.27.2's defaults.
/// </summary>
public sealed record UNet2DConfig
{
    public int InChannels { get; init; } = 3;
    public int OutChannels { get; init; } = 3;
    public int SampleSize { get; init; } = 32;
    public bool CenterInputSample { get; init; }
    public bool FlipSinToCos { get; init; } = true;
    public int FreqShift { get; init; }
    public IReadOnlyList<string> DownBlockTypes { get; init; } = ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"];
    public IReadOnlyList<string> UpBlockTypes { get; init; } = ["AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"];
    public IReadOnlyList<int> BlockOutChannels { get; init; } = [224, 448, 672, 896];
    public int LayersPerBlock { get; init; } = 2;
    public double MidBlockScaleFactor { get; init; } = 1.0;
    public int DownsamplePadding { get; init; } = 1;
    /// <summary>Per-head dimension here (unlike UNet2DConditionModel); null means one head per block.</summary>
    public int? AttentionHeadDim { get; init; } = 8;
    public int? NormNumGroups { get; init; } = 32;
    public int? AttnNormNumGroups { get; init; }
    public double NormEps { get; init; } = 1e-5;
    public string ResnetTimeScaleShift { get; init; } = "default";
    public bool AddAttention { get; init; } = true;
    public int? NumClassEmbeds { get; init; }

    public int TimeEmbedDim => BlockOutChannels[0] * 4;

    public static UNet2DConfig FromFile(string path)
    {
        var reader = ConfigReader.FromFile(path, out var doc);
        using (doc) return Read(reader);
    }

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
