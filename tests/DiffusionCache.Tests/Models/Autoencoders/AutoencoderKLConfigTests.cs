using System.Text.Json;
using DiffusionCache.Models.Config;

namespace DiffusionCache.Tests.Models.Autoencoders;

public sealed class AutoencoderKLConfigTests
{
    /// <summary>The shape of a diffusers 0.27.2 AutoencoderKL config (as written by save_pretrained).</summary>
    private const string Tiny = """
        {
          "_class_name": "AutoencoderKL",
          "_diffusers_version": "0.27.2",
          "act_fn": "silu",
          "block_out_channels": [16, 32],
          "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"],
          "force_upcast": true,
          "in_channels": 3,
          "latent_channels": 4,
          "latents_mean": null,
          "latents_std": null,
          "layers_per_block": 1,
          "norm_num_groups": 8,
          "out_channels": 3,
          "sample_size": 32,
          "scaling_factor": 0.18215,
          "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"]
        }
        """;

    internal static AutoencoderKLConfig Read(string json, Action<Dictionary<string, JsonElement>>? edit = null)
    {
        var fields = JsonSerializer.Deserialize<Dictionary<string, JsonElement>>(json)!;
        edit?.Invoke(fields);
        using var doc = JsonDocument.Parse(JsonSerializer.Serialize(fields));
        return AutoencoderKLConfig.Read(new ConfigReader(doc.RootElement, "test/config.json"));
    }

    private static JsonElement Json(string raw) => JsonDocument.Parse(raw).RootElement.Clone();

    [Fact]
    public void ReadsEveryKeyOfADiffusersConfig()
    {
        var c = Read(Tiny);
        Assert.Equal([16, 32], c.BlockOutChannels);
        Assert.Equal(1, c.LayersPerBlock);
        Assert.Equal(8, c.NormNumGroups);
        Assert.Equal(4, c.LatentChannels);
        Assert.Equal(0.18215, c.ScalingFactor);
        Assert.True(c.ForceUpcast);
        Assert.Equal(2, c.DownFactor);
        // Keys newer than 0.27.2 take the values that reproduce 0.27.2's model.
        Assert.True(c.UseQuantConv);
        Assert.True(c.UsePostQuantConv);
        Assert.True(c.MidBlockAddAttention);
    }

    [Theory]
    [InlineData("down_block_types", """["DownEncoderBlock2D", "AttnDownEncoderBlock2D"]""")]
    [InlineData("up_block_types", """["UpDecoderBlock2D", "AttnUpDecoderBlock2D"]""")]
    [InlineData("act_fn", "\"gelu\"")]
    [InlineData("shift_factor", "0.1159")]
    [InlineData("latents_mean", "[0.1, 0.2, 0.3, 0.4]")]
    [InlineData("latents_std", "[1.0, 1.0, 1.0, 1.0]")]
    public void UnsupportedValueIsAnErrorNamingTheKey(string key, string value)
    {
        var e = Assert.ThrowsAny<DiffusionCacheException>(() => Read(Tiny, f => f[key] = Json(value)));
        Assert.Contains($"'{key}'", e.Message);
        Assert.Contains("not supported", e.Message);
    }

    [Fact]
    public void UnknownKeyIsRefused()
    {
        var e = Assert.ThrowsAny<DiffusionCacheException>(() => Read(Tiny, f => f["use_tiling"] = Json("true")));
        Assert.Contains("'use_tiling'", e.Message);
    }

    [Fact]
    public void OtherClassIsRefused()
    {
        var e = Assert.ThrowsAny<DiffusionCacheException>(() => Read(Tiny, f => f["_class_name"] = Json("\"AutoencoderTiny\"")));
        Assert.Contains("AutoencoderTiny", e.Message);
    }

    [Fact]
    public void BlockListsMustAgreeInLength()
    {
        var e = Assert.ThrowsAny<DiffusionCacheException>(() => Read(Tiny, f => f["block_out_channels"] = Json("[16, 32, 32]")));
        Assert.Contains("equal length", e.Message);
    }

    [Fact]
    public void ChannelsMustBeAMultipleOfTheGroups()
    {
        var e = Assert.ThrowsAny<DiffusionCacheException>(() => Read(Tiny, f => f["norm_num_groups"] = Json("12")));
        Assert.Contains("norm_num_groups", e.Message);
    }

    [Fact]
    public void NewerOptionalKeysAreRead()
    {
        var c = Read(Tiny, f =>
        {
            f["shift_factor"] = Json("null");
            f["use_quant_conv"] = Json("false");
            f["use_post_quant_conv"] = Json("false");
            f["mid_block_add_attention"] = Json("false");
        });
        Assert.False(c.UseQuantConv);
        Assert.False(c.UsePostQuantConv);
        Assert.False(c.MidBlockAddAttention);
    }
}
