using System.Text.Json;
using DiffusionCache.Models.Config;
using DiffusionCache.Models.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Models.Loading;

/// <summary>Builds a CLIP text encoder from a transformers model folder (<c>config.json</c> +
/// <c>model.safetensors</c>, or its fp16 variant or shards), choosing the class from <c>architectures</c>.</summary>
public static class TextEncoderLoader
{
    /// <summary>File stem of transformers' weights: <c>model.safetensors</c>, <c>model.fp16.safetensors</c>,
    /// <c>model.safetensors.index.json</c>.</summary>
    public const string WeightsStem = "model";
    /// <summary>The <c>architectures</c> entry of a text encoder without projection (SD 1.x/2.x, SDXL's
    /// first).</summary>
    public const string TextModel = "CLIPTextModel";
    /// <summary>The <c>architectures</c> entry of a text encoder with <c>text_projection</c> (SDXL's
    /// second).</summary>
    public const string TextModelWithProjection = "CLIPTextModelWithProjection";

    /// <summary>Buffers that transformers recomputes and older versions saved; never weights.</summary>
    public static bool IsWeight(string name) => !name.EndsWith("embeddings.position_ids", StringComparison.Ordinal);

    /// <summary>Builds the text encoder from the folder's <c>config.json</c> and loads its weights strictly.</summary>
    /// <param name="modelDir">A transformers model folder, e.g. a pipeline's <c>text_encoder</c>.</param>
    /// <param name="dtype">Compute type; weights of another type are converted on load.</param>
    /// <param name="device">Where the model is placed before loading; null leaves it on the default device.</param>
    /// <param name="variant">Weights variant such as "fp16" (<c>model.fp16.safetensors</c>); null loads the
    /// float32 file, or the fp16 one when that is all the folder has.</param>
    /// <returns>The loaded model, in eval mode; the caller owns it.</returns>
    /// <exception cref="DiffusionCacheException">The folder, config or weights are missing or invalid, or
    /// <c>architectures</c> names another class (<see cref="CheckpointMismatchException"/> when the weights do
    /// not fit the config).</exception>
    public static ClipTextModel Load(string modelDir, ScalarType dtype = ScalarType.Float32, Device? device = null,
        string? variant = null)
    {
        return ComponentLoader.LoadWeights(Create(modelDir), modelDir, variant, dtype, device, WeightsStem, IsWeight);
    }

    /// <summary>Reads <c>config.json</c> and builds the model with freshly initialised weights.</summary>
    public static ClipTextModel Create(string modelDir)
    {
        var (config, withProjection) = ReadConfig(modelDir);
        return new ClipTextModel(config, withProjection);
    }

    /// <summary>The folder's <c>config.json</c>, and whether <c>architectures</c> names the class with a projection.</summary>
    public static (ClipTextConfig Config, bool WithProjection) ReadConfig(string modelDir)
    {
        if (!Directory.Exists(modelDir)) throw new DiffusionCacheException($"{modelDir}: model folder not found");
        string path = Path.Combine(modelDir, "config.json");
        var reader = ConfigReader.FromFile(path, out var doc);
        using (doc)
        {
            var architectures = doc.RootElement.TryGetProperty("architectures", out var a) && a.ValueKind == JsonValueKind.Array
                ? a.EnumerateArray().Select(e => e.GetString()).ToArray() : [TextModel];
            string? cls = architectures.Length == 1 ? architectures[0] : null;
            bool projection = cls switch
            {
                TextModel => false,
                TextModelWithProjection => true,
                _ => throw new DiffusionCacheException(
                    $"{path}: architectures [{string.Join(", ", architectures)}] is not a supported text encoder ({TextModel}, {TextModelWithProjection})"),
            };
            return (ClipTextConfig.Read(reader), projection);
        }
    }
}
