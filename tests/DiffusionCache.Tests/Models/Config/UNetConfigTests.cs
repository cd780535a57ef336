using DiffusionCache.Models.Config;
using DiffusionCache.Models.Loading;
using DiffusionCache.Tests.Models;

namespace DiffusionCache.Tests.Models.Config;

public class UNetConfigTests
{
    private static string Sd1Config => Path.Combine(TinyModels.GoldenUNet("sd1-2lvl"), "config.json");

    [Fact]
    public void ReadsTheGoldenConfigs()
    {
        var c = UNet2DConditionConfig.FromFile(Sd1Config);
        Assert.Equal([8, 16], c.BlockOutChannels);
        Assert.Equal([2, 2], c.NumAttentionHeads);   // attention_head_dim read as head count (diffusers quirk)
        Assert.Equal(24, c.CrossAttentionDim[0]);
        var d = UNet2DConfig.FromFile(Path.Combine(TinyModels.GoldenUNet("ddpm-class"), "config.json"));
        Assert.Equal(5, d.NumClassEmbeds);
        Assert.Equal(4, d.AttentionHeadDim);
    }

    [Theory]
    [InlineData("\"addition_embed_type\": null", "\"addition_embed_type\": \"text\"", "addition_embed_type")]
    [InlineData("\"attention_type\": \"default\"", "\"attention_type\": \"gated\"", "attention_type")]
    [InlineData("\"mid_block_type\": \"UNetMidBlock2DCrossAttn\"", "\"mid_block_type\": \"UNetMidBlock2DSimpleCrossAttn\"", "mid_block_type")]
    [InlineData("\"resnet_time_scale_shift\": \"default\"", "\"resnet_time_scale_shift\": \"spatial\"", "resnet_time_scale_shift")]
    [InlineData("\"dual_cross_attention\": false", "\"dual_cross_attention\": true", "dual_cross_attention")]
    [InlineData("\"act_fn\": \"silu\"", "\"act_fn\": \"gelu\"", "act_fn")]
    [InlineData("\"use_linear_projection\": false", "\"use_linear_projection\": false, \"brand_new_option\": 3", "brand_new_option")]
    [InlineData("\"block_out_channels\": [\n    8,\n    16\n  ]", "\"block_out_channels\": [8, 16, 32]", "block_out_channels")]
    public void RefusesWhatItDoesNotImplement(string find, string replace, string key)
    {
        string dir = TinyModels.CopyWithConfig(TinyModels.GoldenUNet("sd1-2lvl"), s =>
        {
            Assert.Contains(find, s);
            return s.Replace(find, replace);
        });
        var e = Assert.ThrowsAny<DiffusionCacheException>(() => UNetLoader.Create(dir));
        Assert.Contains(key, e.Message);
        Assert.Contains("config.json", e.Message);
    }

    [Fact]
    public void UnknownClassIsAClearError()
    {
        string dir = TinyModels.CopyWithConfig(TinyModels.GoldenUNet("sd1-2lvl"),
            s => s.Replace("\"UNet2DConditionModel\"", "\"UNetSpatioTemporalConditionModel\""));
        var e = Assert.Throws<DiffusionCacheException>(() => UNetLoader.Create(dir));
        Assert.Contains("UNetSpatioTemporalConditionModel", e.Message);
    }

    [Fact]
    public void MissingFolderAndConfigAreClearErrors()
    {
        Assert.Contains("not found", Assert.Throws<DiffusionCacheException>(() => UNetLoader.Create("/nonexistent/model")).Message);
        string empty = TinyModels.TempDir();
        Assert.Contains("config.json", Assert.Throws<DiffusionCacheException>(() => UNetLoader.Create(empty)).Message);
    }

    [Fact]
    public void BrokenJsonIsAClearError()
    {
        string dir = TinyModels.CopyWithConfig(TinyModels.GoldenUNet("sd1-2lvl"), s => s[..(s.Length / 2)]);
        Assert.Contains("not valid JSON", Assert.Throws<DiffusionCacheException>(() => UNetLoader.Create(dir)).Message);
    }
}
