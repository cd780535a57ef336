using DiffusionCache.Models.Loading;
using DiffusionCache.Tests.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Models.Loading;

public class UNetLoaderTests
{
    [Fact]
    public void ParameterNamesAreTheCheckpointKeys()
    {
        using var model = TinyModels.Sd1();
        var names = model.named_parameters().Select(p => p.name).ToHashSet();
        Assert.Contains("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight", names);
        Assert.Contains("down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj.weight", names);
        Assert.Contains("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_out.0.bias", names);
        Assert.Contains("up_blocks.0.upsamplers.0.conv.weight", names);
        Assert.Contains("down_blocks.0.downsamplers.0.conv.weight", names);
        Assert.Equal(52644, model.parameters().Sum(p => p.numel()));
    }

    [Fact]
    public void ShapeMismatchNamesTheTensor()
    {
        // Same structure, wider cross-attention context: to_k/to_v of every attn2 no longer fit.
        string dir = TinyModels.CopyWithConfig(TinyModels.GoldenUNet("sd1-2lvl"),
            s => s.Replace("\"cross_attention_dim\": 24", "\"cross_attention_dim\": 32"));
        var e = Assert.Throws<CheckpointMismatchException>(() => UNetLoader.Load(dir));
        Assert.Contains("attn2.to_k.weight", e.Message);
        Assert.NotEmpty(e.ShapeMismatches);
        Assert.Empty(e.Missing);
    }

    [Fact]
    public void MissingAndUnexpectedKeysAreListed()
    {
        // A class-conditional config needs class_embedding.weight, which the checkpoint lacks.
        string dir = TinyModels.CopyWithConfig(TinyModels.GoldenUNet("sd1-2lvl"),
            s => s.Replace("\"num_class_embeds\": null", "\"num_class_embeds\": 3"));
        var e = Assert.Throws<CheckpointMismatchException>(() => UNetLoader.Load(dir));
        Assert.Equal(["class_embedding.weight"], e.Missing);

        // And a model with fewer layers leaves checkpoint tensors unused.
        string fewer = TinyModels.CopyWithConfig(TinyModels.GoldenUNet("sd2-3lvl"),
            s => s.Replace("\"layers_per_block\": 2", "\"layers_per_block\": 1"));
        var u = Assert.Throws<CheckpointMismatchException>(() => UNetLoader.Load(fewer));
        Assert.Contains(u.Unexpected, k => k.StartsWith("down_blocks.0.resnets.1."));
    }

    [Fact]
    public void LoadsInBFloat16()
    {
        using var model = UNetLoader.Load(TinyModels.GoldenUNet("sd1-2lvl"), dtype: ScalarType.BFloat16);
        Assert.All(model.parameters(), p => Assert.Equal(ScalarType.BFloat16, p.dtype));
        var input = TinyModels.Input(model);
        using var output = model.Forward(input with { Sample = input.Sample.to(ScalarType.BFloat16), Context = input.Context!.to(ScalarType.BFloat16) });
        Assert.Equal(ScalarType.BFloat16, output.dtype);
        Assert.True(output.isfinite().all().item<bool>());
    }

    [Fact]
    public void ForwardRejectsBadInputs()
    {
        using var model = TinyModels.Sd1();
        var input = TinyModels.Input(model);
        Assert.Throws<DiffusionCacheException>(() => model.Forward(input with { Context = null }));
        Assert.Throws<DiffusionCacheException>(() => model.Forward(input with { Sample = randn(2, 3, 8, 8) }));
        Assert.Throws<DiffusionCacheException>(() => model.Forward(input with { Timestep = tensor(new float[] { 1, 2, 3 }) }));
    }

    [Fact]
    public void OddInputSidesUseExplicitUpsampleSizes()
    {
        using var model = TinyModels.Sd1();
        var input = TinyModels.Input(model, side: 9);
        using var output = model.Forward(input);
        Assert.Equal([2L, 4, 9, 9], output.shape);
    }
}
