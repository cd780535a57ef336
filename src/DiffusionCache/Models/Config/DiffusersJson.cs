using System.Text.Json;

namespace DiffusionCache.Models.Config;

/// <summary>Writes configs the way diffusers does (<c>_class_name</c>, <c>_diffusers_version</c>, snake_case keys,
/// sorted), so that our exported folders load in diffusers too.</summary>
public static class DiffusersJson
{
    /// <summary>The <c>_diffusers_version</c> written into configs: the diffusers version whose layouts and
    /// defaults this library follows.</summary>
    public const string Version = "0.27.2";

    /// <summary>A config as diffusers writes it: <paramref name="values"/> plus <c>_class_name</c> and
    /// <c>_diffusers_version</c>, keys sorted ordinally, indented.</summary>
    /// <param name="className">diffusers' class name, e.g. <c>UNet2DConditionModel</c>.</param>
    /// <param name="values">The config's entries under their snake_case keys; a null value is written as null.</param>
    /// <returns>The JSON text.</returns>
    public static string Write(string className, IReadOnlyDictionary<string, object?> values)
    {
        var all = new SortedDictionary<string, object?>(StringComparer.Ordinal)
        {
            ["_class_name"] = className,
            ["_diffusers_version"] = Version,
        };
        foreach (var (k, v) in values) all[k] = v;
        return JsonSerializer.Serialize(all, new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>The <c>config.json</c> of a <c>UNet2DConditionModel</c>. Head counts are written as
    /// <c>attention_head_dim</c> with <c>num_attention_heads</c> null, the form in which diffusers 0.27.2 reads
    /// them (see <see cref="UNet2DConditionConfig.NumAttentionHeads"/>).</summary>
    /// <param name="c">The config to write.</param>
    public static string ToJson(this UNet2DConditionConfig c) => Write("UNet2DConditionModel", new Dictionary<string, object?>
    {
        ["in_channels"] = c.InChannels,
        ["out_channels"] = c.OutChannels,
        ["sample_size"] = c.SampleSize,
        ["center_input_sample"] = c.CenterInputSample,
        ["flip_sin_to_cos"] = c.FlipSinToCos,
        ["freq_shift"] = c.FreqShift,
        ["down_block_types"] = c.DownBlockTypes,
        ["mid_block_type"] = c.MidBlockType,
        ["up_block_types"] = c.UpBlockTypes,
        ["only_cross_attention"] = c.OnlyCrossAttention,
        ["block_out_channels"] = c.BlockOutChannels,
        ["layers_per_block"] = c.LayersPerBlock,
        ["downsample_padding"] = c.DownsamplePadding,
        ["mid_block_scale_factor"] = c.MidBlockScaleFactor,
        ["act_fn"] = c.ActFn,
        ["norm_num_groups"] = c.NormNumGroups,
        ["norm_eps"] = c.NormEps,
        ["cross_attention_dim"] = c.CrossAttentionDim,
        ["transformer_layers_per_block"] = c.TransformerLayersPerBlock,
        // diffusers 0.27.2 reads attention_head_dim as the head count when num_attention_heads is null.
        ["attention_head_dim"] = c.NumAttentionHeads,
        ["num_attention_heads"] = null,
        ["use_linear_projection"] = c.UseLinearProjection,
        ["upcast_attention"] = c.UpcastAttention,
        ["num_class_embeds"] = c.NumClassEmbeds,
        ["class_embeddings_concat"] = c.ClassEmbeddingsConcat,
        ["resnet_time_scale_shift"] = c.ResnetTimeScaleShift,
        ["time_embedding_dim"] = c.TimeEmbeddingDim,
        ["conv_in_kernel"] = c.ConvInKernel,
        ["conv_out_kernel"] = c.ConvOutKernel,
        ["addition_embed_type"] = c.AdditionEmbedType,
        ["addition_time_embed_dim"] = c.AdditionTimeEmbedDim,
        ["projection_class_embeddings_input_dim"] = c.ProjectionClassEmbeddingsInputDim,
    });

    /// <summary>The <c>config.json</c> of an <c>AutoencoderKL</c>.</summary>
    /// <param name="c">The config to write.</param>
    public static string ToJson(this AutoencoderKLConfig c) => Write("AutoencoderKL", new Dictionary<string, object?>
    {
        ["in_channels"] = c.InChannels,
        ["out_channels"] = c.OutChannels,
        ["down_block_types"] = c.DownBlockTypes,
        ["up_block_types"] = c.UpBlockTypes,
        ["block_out_channels"] = c.BlockOutChannels,
        ["layers_per_block"] = c.LayersPerBlock,
        ["act_fn"] = "silu",
        ["latent_channels"] = c.LatentChannels,
        ["norm_num_groups"] = c.NormNumGroups,
        ["sample_size"] = c.SampleSize,
        ["scaling_factor"] = c.ScalingFactor,
        ["force_upcast"] = c.ForceUpcast,
        ["latents_mean"] = null,
        ["latents_std"] = null,
        ["use_quant_conv"] = c.UseQuantConv,
        ["use_post_quant_conv"] = c.UsePostQuantConv,
        ["mid_block_add_attention"] = c.MidBlockAddAttention,
    });
}
