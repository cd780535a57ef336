using DiffusionCache.Formats.Checkpoints;
using DiffusionCache.Models.Autoencoders;
using DiffusionCache.Models.Config;
using DiffusionCache.Models.Loading;
using DiffusionCache.Models.Text;
using DiffusionCache.Models.UNets;
using DiffusionCache.Parity;
using DiffusionCache.Tests.TestSupport;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Formats.Checkpoints;

/// <summary>The key maps on layouts the golden file (2 levels, layers_per_block 2) does not have.</summary>
public sealed class LdmKeyMapTests
{
    /// <summary>3 levels, one resnet per down level, attention at the two upper levels.</summary>
    private static readonly UNet2DConditionConfig ThreeLevels = new()
    {
        SampleSize = 8,
        BlockOutChannels = [8, 8, 16],
        DownBlockTypes = ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        UpBlockTypes = ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
        OnlyCrossAttention = [false, false, false],
        LayersPerBlock = [1, 1, 1],
        CrossAttentionDim = [12, 12, 12],
        TransformerLayersPerBlock = [1, 1, 1],
        NumAttentionHeads = [2, 2, 2],
        NormNumGroups = 4,
    };

    [Theory]
    // diffusers: input block i -> down block (i-1)//(L+1), layer (i-1)%(L+1); output block i -> up block i//(L+1), layer i%(L+1).
    [InlineData("input_blocks.1.0.in_layers.2.weight", "down_blocks.0.resnets.0.conv1.weight")]
    [InlineData("input_blocks.1.1.proj_in.weight", "down_blocks.0.attentions.0.proj_in.weight")]
    [InlineData("input_blocks.2.0.op.bias", "down_blocks.0.downsamplers.0.conv.bias")]
    [InlineData("input_blocks.3.0.emb_layers.1.weight", "down_blocks.1.resnets.0.time_emb_proj.weight")]
    [InlineData("input_blocks.3.1.transformer_blocks.0.attn2.to_k.weight", "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight")]
    [InlineData("input_blocks.4.0.op.weight", "down_blocks.1.downsamplers.0.conv.weight")]
    [InlineData("input_blocks.5.0.skip_connection.weight", "down_blocks.2.resnets.0.conv_shortcut.weight")]
    [InlineData("middle_block.2.out_layers.3.bias", "mid_block.resnets.1.conv2.bias")]
    [InlineData("output_blocks.1.0.out_layers.0.weight", "up_blocks.0.resnets.1.norm2.weight")]
    [InlineData("output_blocks.1.1.conv.weight", "up_blocks.0.upsamplers.0.conv.weight")]
    [InlineData("output_blocks.2.1.norm.bias", "up_blocks.1.attentions.0.norm.bias")]
    [InlineData("output_blocks.3.2.conv.bias", "up_blocks.1.upsamplers.0.conv.bias")]
    [InlineData("output_blocks.5.1.proj_out.weight", "up_blocks.2.attentions.1.proj_out.weight")]
    [InlineData("out.0.weight", "conv_norm_out.weight")]
    [InlineData("time_embed.2.bias", "time_embedding.linear_2.bias")]
    public void Unet_blocks_are_numbered_as_diffusers_numbers_them(string original, string diffusers)
    {
        var map = LdmKeyMap.UNet(ThreeLevels);
        Assert.Equal(diffusers, Assert.Single(map.Map(LdmKeyMap.UNetPrefix + original)!).Name);
        Assert.Equal(LdmKeyMap.UNetPrefix + original, map.FileKey(diffusers));
    }

    [Theory]
    [InlineData("input_blocks.5.1.norm.weight")]       // no attention at the last level
    [InlineData("input_blocks.6.0.op.weight")]         // no downsampler after it
    [InlineData("output_blocks.5.2.conv.weight")]      // no upsampler at the last up level
    [InlineData("output_blocks.6.0.in_layers.0.weight")]
    [InlineData("input_blocks.1.0.in_layers.1.weight")] // SiLU has no weights
    [InlineData("out.1.weight")]
    public void Keys_without_a_module_in_the_config_are_unmapped(string original) =>
        Assert.Null(LdmKeyMap.UNet(ThreeLevels).Map(LdmKeyMap.UNetPrefix + original));

    [Fact]
    public void Random_models_of_another_layout_round_trip_through_a_written_single_file()
    {
        using var dir = new TempFolder();
        var vaeConfig = new AutoencoderKLConfig
        {
            DownBlockTypes = ["DownEncoderBlock2D", "DownEncoderBlock2D"], UpBlockTypes = ["UpDecoderBlock2D", "UpDecoderBlock2D"],
            BlockOutChannels = [4, 8], LayersPerBlock = 2, NormNumGroups = 2,
        };
        var textConfig = ClipTextConfig.StableDiffusion1 with { VocabSize = 30, HiddenSize = 12, IntermediateSize = 16, NumHiddenLayers = 1, NumAttentionHeads = 2 };
        using var unet = Randomized(new UNet2DConditionModel(ThreeLevels), 1);
        using var vae = Randomized(new AutoencoderKL(vaeConfig), 2);
        using var text = Randomized(new ClipTextModel(textConfig), 3);
        LdmWriter.WriteSd1(dir.File("x.safetensors"), unet, vae, text);

        using var checkpoint = LdmCheckpoint.Open(dir.File("x.safetensors"));
        using var unet2 = ComponentLoader.LoadWeights(new UNet2DConditionModel(ThreeLevels), checkpoint.UNet(ThreeLevels), ScalarType.Float32, null);
        using var vae2 = ComponentLoader.LoadWeights(new AutoencoderKL(vaeConfig), checkpoint.Vae(vaeConfig), ScalarType.Float32, null);
        using var text2 = ComponentLoader.LoadWeights(new ClipTextModel(textConfig), checkpoint.TextEncoder(textConfig), ScalarType.Float32, null);
        foreach (var (a, b) in new (nn.Module, nn.Module)[] { (unet, unet2), (vae, vae2), (text, text2) })
        {
            var expected = a.named_parameters().ToDictionary(p => p.name, p => p.parameter);
            foreach (var (name, p) in b.named_parameters()) Assert.True(SingleFileParity.Bitwise(p.detach(), expected[name].detach()), name);
        }
        using var file = DiffusionCache.Formats.Safetensors.SafetensorsFile.Open(dir.File("x.safetensors"));
        Assert.Equal(new long[] { 8, 8, 1, 1 }, file.Entry("first_stage_model.encoder.mid.attn_1.proj_out.weight").Shape);
        Assert.True(file.Contains("model.diffusion_model.output_blocks.3.2.conv.weight"));
    }

    private static T Randomized<T>(T model, long seed) where T : nn.Module
    {
        var g = new Generator((ulong)seed);
        using var noGrad = no_grad();
        foreach (var (_, p) in model.named_parameters()) p.copy_(randn(p.shape, generator: g));
        return model;
    }
}
