using DiffusionCache.Formats.Safetensors;
using DiffusionCache.Models.Config;
using DiffusionCache.Models.Loading;
using DiffusionCache.Models.Text;
using DiffusionCache.Tests.TestSupport;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Models.Text;

public sealed class ClipTextModelTests
{
    private static string TinyEncoder => Golden.Path("sdxl", "models", "sd1-tiny", "text_encoder");

    [Fact]
    public void ParameterNamesAreTransformers()
    {
        using var model = new ClipTextModel(ClipTextConfig.StableDiffusion1 with { NumHiddenLayers = 1, HiddenSize = 8, NumAttentionHeads = 2, IntermediateSize = 16, VocabSize = 10 }, withProjection: true);
        var names = model.named_parameters().Select(p => p.name).ToHashSet();
        Assert.Contains("text_model.embeddings.token_embedding.weight", names);
        Assert.Contains("text_model.encoder.layers.0.self_attn.q_proj.bias", names);
        Assert.Contains("text_model.encoder.layers.0.mlp.fc2.weight", names);
        Assert.Contains("text_model.final_layer_norm.weight", names);
        Assert.Contains("text_projection.weight", names);
        Assert.Equal(21, names.Count);   // 2 embeddings, 16 per layer, the final norm's 2, the projection
    }

    [Fact]
    public void CausalMaskKeepsEarlierPositionsIndependentOfLaterTokens()
    {
        using var model = TextEncoderLoader.Load(TinyEncoder);
        using var scope = NewDisposeScope();
        var a = tensor(new long[] { 998, 5, 6, 7, 999 }).unsqueeze(0);
        var b = tensor(new long[] { 998, 5, 6, 300, 2 }).unsqueeze(0);
        using var outA = model.Forward(a);
        using var outB = model.Forward(b);
        Assert.True(outA.LastHiddenState[0, ..3].allclose(outB.LastHiddenState[0, ..3]));
        Assert.False(outA.LastHiddenState[0, 3].allclose(outB.LastHiddenState[0, 3]));
    }

    [Fact]
    public void AcceptsThePositionIdsBufferOfOlderCheckpoints()
    {
        using var dir = new TempFolder();
        File.Copy(Path.Combine(TinyEncoder, "config.json"), dir.File("config.json"));
        using (var source = SafetensorsFile.Open(Path.Combine(TinyEncoder, "model.safetensors")))
        {
            var tensors = source.Entries.Select(e => KeyValuePair.Create(e.Name, source.Load(e.Name))).ToList();
            tensors.Add(KeyValuePair.Create("text_model.embeddings.position_ids", arange(77L).unsqueeze(0)));
            SafetensorsWriter.Write(dir.File("model.safetensors"), tensors);
        }
        using var model = TextEncoderLoader.Load(dir.Path);
        Assert.Equal("CLIPTextModel", model.ClassName);
    }

    [Fact]
    public void RefusesAnUnknownArchitectureOrActivation()
    {
        using var dir = new TempFolder();
        string config = File.ReadAllText(Path.Combine(TinyEncoder, "config.json"));
        File.WriteAllText(dir.File("config.json"), config.Replace("\"CLIPTextModel\"", "\"T5EncoderModel\""));
        Assert.Contains("T5EncoderModel", Assert.ThrowsAny<DiffusionCacheException>(() => TextEncoderLoader.Create(dir.Path)).Message);
        File.WriteAllText(dir.File("config.json"), config.Replace("quick_gelu", "relu"));
        Assert.Contains("hidden_act", Assert.ThrowsAny<DiffusionCacheException>(() => TextEncoderLoader.Create(dir.Path)).Message);
        File.WriteAllText(dir.File("config.json"), config.Replace("\"vocab_size\"", "\"use_fancy_rope\": true, \"vocab_size\""));
        Assert.Contains("use_fancy_rope", Assert.ThrowsAny<DiffusionCacheException>(() => TextEncoderLoader.Create(dir.Path)).Message);
    }

    [Fact]
    public void PooledIndexFollowsTheConfigsEosRule()
    {
        using var legacy = new ClipTextModel(ClipTextConfig.StableDiffusion1 with { NumHiddenLayers = 1, HiddenSize = 8, NumAttentionHeads = 2, IntermediateSize = 16, VocabSize = 50 });
        using var explicitEos = new ClipTextModel(legacy.Config with { EosTokenId = 7 });
        using var ids = tensor(new long[] { 1, 7, 40, 7, 0 }).unsqueeze(0);
        Assert.Equal(2, legacy.PooledIndex(ids).item<long>());       // argmax: the largest id
        Assert.Equal(1, explicitEos.PooledIndex(ids).item<long>());  // the first eos
    }
}
