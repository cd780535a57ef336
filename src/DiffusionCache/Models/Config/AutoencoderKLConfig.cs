namespace DiffusionCache.Models.Config;

/// <summary>
/// The <c>config.json</c> of a diffusers <c>AutoencoderKL</c> (the Stable Diffusion VAE). Keys missing from a file
/// take diffusers 0.27.2's defaults; keys added by later diffusers versions (<c>shift_factor</c>,
/// <c>use_quant_conv</c>, <c>use_post_quant_conv</c>, <c>mid_block_add_attention</c>) are read too, so that a
/// newer file is either understood or refused, never half-read.
/// </summary>
public sealed record AutoencoderKLConfig
{
    /// <summary>Image channels the encoder takes (<c>in_channels</c>).</summary>
    public int InChannels { get; init; } = 3;
    /// <summary>Image channels the decoder produces (<c>out_channels</c>).</summary>
    public int OutChannels { get; init; } = 3;
    /// <summary>Encoder block types, one per block; only <c>DownEncoderBlock2D</c> is supported.</summary>
    public IReadOnlyList<string> DownBlockTypes { get; init; } = ["DownEncoderBlock2D"];
    /// <summary>Decoder block types, one per block; only <c>UpDecoderBlock2D</c> is supported.</summary>
    public IReadOnlyList<string> UpBlockTypes { get; init; } = ["UpDecoderBlock2D"];
    /// <summary>Channels per encoder block (the decoder uses them reversed); each a multiple of
    /// <see cref="NormNumGroups"/>.</summary>
    public IReadOnlyList<int> BlockOutChannels { get; init; } = [64];
    /// <summary>Resnets per encoder block; decoder blocks have one more (diffusers' layout).</summary>
    public int LayersPerBlock { get; init; } = 1;
    /// <summary>Channels of the latents (<c>latent_channels</c>); the encoder outputs twice as many moments.</summary>
    public int LatentChannels { get; init; } = 4;
    /// <summary>Groups of every GroupNorm (<c>norm_num_groups</c>).</summary>
    public int NormNumGroups { get; init; } = 32;
    /// <summary>Informative: the image side the model was trained at.</summary>
    public int SampleSize { get; init; } = 32;
    /// <summary>Pipelines multiply encoder latents by this (and divide before decoding); not part of the model's
    /// own encode/decode.</summary>
    public double ScalingFactor { get; init; } = 0.18215;
    /// <summary>A pipeline hint: run this VAE in float32 even when the pipeline is half precision.</summary>
    public bool ForceUpcast { get; init; } = true;
    /// <summary>Whether the 1x1 <c>quant_conv</c> follows the encoder (<c>use_quant_conv</c>).</summary>
    public bool UseQuantConv { get; init; } = true;
    /// <summary>Whether the 1x1 <c>post_quant_conv</c> precedes the decoder (<c>use_post_quant_conv</c>).</summary>
    public bool UsePostQuantConv { get; init; } = true;
    /// <summary>Whether the encoder's and decoder's mid blocks have their self-attention
    /// (<c>mid_block_add_attention</c>).</summary>
    public bool MidBlockAddAttention { get; init; } = true;

    /// <summary>Spatial down factor between image and latents: 2 per down block but the last.</summary>
    public int DownFactor => 1 << (BlockOutChannels.Count - 1);

    /// <summary>Stable Diffusion 1.x/2.x's VAE (sd-vae-ft-mse layout).</summary>
    public static AutoencoderKLConfig StableDiffusion { get; } = new()
    {
        DownBlockTypes = ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
        UpBlockTypes = ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
        BlockOutChannels = [128, 256, 512, 512],
        LayersPerBlock = 2,
        SampleSize = 512,
    };

    /// <summary>Reads and validates a <c>config.json</c>; see <see cref="Read"/>.</summary>
    /// <param name="path">The config file.</param>
    /// <exception cref="DiffusionCacheException">The file is missing or not JSON, or <see cref="Read"/> refuses
    /// it.</exception>
    public static AutoencoderKLConfig FromFile(string path)
    {
        var reader = ConfigReader.FromFile(path, out var doc);
        using (doc) return Read(reader);
    }

    /// <summary>Reads an <c>AutoencoderKL</c> config strictly: unknown keys, other block types or activations,
    /// <c>shift_factor</c>, <c>latents_mean</c>/<c>latents_std</c> and non-positive sizes are refused.</summary>
    /// <param name="r">A reader over the config, not yet read from.</param>
    /// <exception cref="ConfigException">The config is malformed or asks for something not implemented.</exception>
    public static AutoencoderKLConfig Read(ConfigReader r)
    {
        var cls = r.String("_class_name", "AutoencoderKL");
        if (cls != "AutoencoderKL") throw r.Error($"expected an AutoencoderKL config, found '{cls}'");
        var d = new AutoencoderKLConfig();
        var blockOut = r.Ints("block_out_channels", d.BlockOutChannels);
        var downTypes = r.Strings("down_block_types", d.DownBlockTypes);
        var upTypes = r.Strings("up_block_types", d.UpBlockTypes);
        if (blockOut.Count == 0) throw r.Error("block_out_channels must not be empty");
        if (downTypes.Count != blockOut.Count || upTypes.Count != blockOut.Count)
            throw r.Error("down_block_types, up_block_types and block_out_channels must have equal length");
        foreach (var t in downTypes)
            if (t != "DownEncoderBlock2D") throw r.Unsupported("down_block_types", $"\"{t}\"");
        foreach (var t in upTypes)
            if (t != "UpDecoderBlock2D") throw r.Unsupported("up_block_types", $"\"{t}\"");
        // ResnetBlock2D is SiLU-only; diffusers' get_activation treats "swish" and "silu" alike.
        var act = r.String("act_fn", "silu")!;
        if (act is not ("silu" or "swish")) throw r.Unsupported("act_fn", $"\"{act}\"");
        // SD3/Flux-style latent shifting and SDXL-style per-channel latent statistics are pipeline features we
        // do not implement; a value would silently change what "latents" mean.
        r.RequireNull("shift_factor");
        r.RequireNull("latents_mean");
        r.RequireNull("latents_std");

        var config = new AutoencoderKLConfig
        {
            InChannels = r.Int("in_channels", d.InChannels),
            OutChannels = r.Int("out_channels", d.OutChannels),
            DownBlockTypes = downTypes,
            UpBlockTypes = upTypes,
            BlockOutChannels = blockOut,
            LayersPerBlock = r.Int("layers_per_block", d.LayersPerBlock),
            LatentChannels = r.Int("latent_channels", d.LatentChannels),
            NormNumGroups = r.Int("norm_num_groups", d.NormNumGroups),
            SampleSize = r.Int("sample_size", d.SampleSize),
            ScalingFactor = r.Double("scaling_factor", d.ScalingFactor),
            ForceUpcast = r.Bool("force_upcast", d.ForceUpcast),
            UseQuantConv = r.Bool("use_quant_conv", d.UseQuantConv),
            UsePostQuantConv = r.Bool("use_post_quant_conv", d.UsePostQuantConv),
            MidBlockAddAttention = r.Bool("mid_block_add_attention", d.MidBlockAddAttention),
        };
        r.EnsureAllRead();

        foreach (var (key, value) in new[] { ("in_channels", config.InChannels), ("out_channels", config.OutChannels),
                     ("layers_per_block", config.LayersPerBlock), ("latent_channels", config.LatentChannels),
                     ("norm_num_groups", config.NormNumGroups) })
            if (value <= 0) throw r.Error($"'{key}' must be positive, found {value}");
        foreach (int c in blockOut)
            if (c <= 0 || c % config.NormNumGroups != 0)
                throw r.Error($"block_out_channels value {c} is not a positive multiple of norm_num_groups {config.NormNumGroups}");
        return config;
    }
}
