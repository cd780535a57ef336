using DiffusionCache.Formats.Checkpoints;
using DiffusionCache.Formats.Safetensors;
using DiffusionCache.Models.Config;
using DiffusionCache.Models.Loading;
using DiffusionCache.Models.Text;
using DiffusionCache.Parity;
using DiffusionCache.Tests.TestSupport;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Formats.Checkpoints;

/// <summary>SD 2.x single files keep the text encoder in OpenCLIP's layout. The golden data has no SD 2.x file, so
/// this is a round trip: a random CLIPTextModel under transformers names, written here in OpenCLIP's layout as
/// diffusers' <c>convert_open_clip_checkpoint</c> reads it (fused q/k/v, ln_1/ln_2, c_fc/c_proj, one more resblock
/// than the model uses, text_projection, logit_scale), read back through the key map.</summary>
public sealed class OpenClipTextMapTests
{
    private static readonly ClipTextConfig Config = ClipTextConfig.StableDiffusion2 with
    {
        VocabSize = 40, HiddenSize = 8, IntermediateSize = 12, NumHiddenLayers = 2, NumAttentionHeads = 2, MaxPositionEmbeddings = 77,
    };

    private static ClipTextModel RandomModel(long seed)
    {
        var model = new ClipTextModel(Config);
        var g = new Generator((ulong)seed);
        using var noGrad = no_grad();
        foreach (var (_, p) in model.named_parameters()) p.copy_(randn(p.shape, generator: g));
        return model;
    }

    /// <summary>The model's tensors as an SD 2.x file holds them, plus the unused last layer and extras.</summary>
    private static List<KeyValuePair<string, Tensor>> OpenClipLayout(ClipTextModel model, int extraLayers = 1) =>
        [.. LdmWriter.OpenClip(LdmKeyMap.OpenClipPrefix, model, extraLayers, projection: false), new("model.diffusion_model.out.2.bias", zeros(4))];

    [Fact]
    public void A_random_text_encoder_written_in_openclip_layout_loads_back_bitwise()
    {
        using var dir = new TempFolder();
        using var original = RandomModel(5);
        SafetensorsWriter.Write(dir.File("sd2.safetensors"), OpenClipLayout(original));

        using var checkpoint = LdmCheckpoint.Open(dir.File("sd2.safetensors"));
        Assert.Equal(LdmFamily.StableDiffusion2, checkpoint.Family);
        var source = checkpoint.TextEncoder(Config);
        Assert.Equal(2 + 2 + 16 * Config.NumHiddenLayers, source.Names.Count);
        Assert.Equal("cond_stage_model.model.transformer.resblocks.1.attn.in_proj_weight", source.FileKey("text_model.encoder.layers.1.self_attn.k_proj.weight"));
        using var loaded = ComponentLoader.LoadWeights(new ClipTextModel(Config), source, ScalarType.Float32, null, TextEncoderLoader.IsWeight);

        var expected = original.named_parameters().ToDictionary(x => x.name, x => (Tensor)x.parameter);
        foreach (var (name, p) in loaded.named_parameters())
            Assert.True(SingleFileParity.Bitwise(p.detach(), expected[name].detach()), name);
        using var scope = NewDisposeScope();
        var ids = tensor(new long[,] { { 0, 5, 9, 2, 1 } });
        Assert.True(SingleFileParity.Bitwise(loaded.Forward(ids).LastHiddenState, original.Forward(ids).LastHiddenState));
    }

    [Fact]
    public void Q_k_and_v_are_the_thirds_of_the_fused_projection_in_order()
    {
        using var dir = new TempFolder();
        using var original = RandomModel(6);
        var layout = OpenClipLayout(original);
        SafetensorsWriter.Write(dir.File("sd2.safetensors"), layout);
        using var checkpoint = LdmCheckpoint.Open(dir.File("sd2.safetensors"));
        var source = checkpoint.TextEncoder(Config);
        var fused = layout.Single(t => t.Key.EndsWith("resblocks.0.attn.in_proj_weight", StringComparison.Ordinal)).Value;
        string[] parts = ["q", "k", "v"];
        for (int i = 0; i < 3; i++)
        {
            using var part = source.Load($"text_model.encoder.layers.0.self_attn.{parts[i]}_proj.weight");
            Assert.True(SingleFileParity.Bitwise(part, fused[(i * 8)..((i + 1) * 8)].contiguous()));
            Assert.Equal(new long[] { 8, 8 }, source.Entry($"text_model.encoder.layers.0.self_attn.{parts[i]}_proj.weight").Shape);
        }
    }

    [Fact]
    public void Layers_beyond_the_one_sd2_leaves_unused_are_errors()
    {
        using var dir = new TempFolder();
        using var original = RandomModel(7);
        SafetensorsWriter.Write(dir.File("sd2.safetensors"), OpenClipLayout(original, extraLayers: 2));
        using var checkpoint = LdmCheckpoint.Open(dir.File("sd2.safetensors"));
        var e = Assert.Throws<LdmCheckpointException>(() => checkpoint.TextEncoder(Config));
        Assert.Contains("'cond_stage_model.model.transformer.resblocks.3.attn.in_proj_bias'", e.Message);
        Assert.All(e.Keys, k => Assert.StartsWith("cond_stage_model.model.transformer.resblocks.3.", k));
    }

    [Fact]
    public void A_missing_fused_projection_is_named_by_its_file_key()
    {
        using var dir = new TempFolder();
        using var original = RandomModel(8);
        var layout = OpenClipLayout(original);
        layout.RemoveAll(t => t.Key == "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight");
        SafetensorsWriter.Write(dir.File("sd2.safetensors"), layout);
        using var checkpoint = LdmCheckpoint.Open(dir.File("sd2.safetensors"));
        var e = Assert.Throws<CheckpointMismatchException>(() =>
            ComponentLoader.LoadWeights(new ClipTextModel(Config), checkpoint.TextEncoder(Config), ScalarType.Float32, null, TextEncoderLoader.IsWeight));
        Assert.Equal(3, e.Missing.Count);
        Assert.Contains("text_model.encoder.layers.0.self_attn.q_proj.weight (file key cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight)", e.Message);
    }
}
