using System.Text.Json;
using DiffusionCache.Formats.Diffusers;
using DiffusionCache.Models.Config;
using DiffusionCache.Models.UNets;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Models.Loading;

/// <summary>Builds a U-Net from a diffusers model folder (<c>config.json</c> + weights), choosing the class from
/// <c>_class_name</c>.</summary>
public static class UNetLoader
{
    /// <summary>Builds the U-Net named by the folder's <c>config.json</c> and loads its weights strictly.</summary>
    /// <param name="modelDir">A diffusers component folder, e.g. a pipeline's <c>unet</c>.</param>
    /// <param name="variant">Weights variant such as "fp16" (<c>diffusion_pytorch_model.fp16.safetensors</c>);
    /// null loads the float32 file, or the fp16 one when that is all the folder has.</param>
    /// <param name="dtype">Compute type; weights of another type are converted on load (diffusers keeps float32
    /// unless asked).</param>
    /// <param name="device">Where the model is placed before loading; null leaves it on the default device.</param>
    /// <returns>A <see cref="UNet2DConditionModel"/> or <see cref="UNet2DModel"/> in eval mode; the caller owns
    /// it.</returns>
    /// <exception cref="DiffusionCacheException">The folder, config or weights are missing or invalid, or the
    /// class is not supported (<see cref="CheckpointMismatchException"/> when the weights do not fit the
    /// config).</exception>
    public static DiffusionUNet Load(string modelDir, string? variant = null, ScalarType dtype = ScalarType.Float32,
        Device? device = null)
    {
        return ComponentLoader.LoadWeights(Create(modelDir), modelDir, variant, dtype, device);
    }

    /// <summary>Reads <c>config.json</c> and builds the model with freshly initialised weights.</summary>
    public static DiffusionUNet Create(string modelDir)
    {
        if (!Directory.Exists(modelDir)) throw new DiffusionCacheException($"{modelDir}: model folder not found");
        string path = Path.Combine(modelDir, "config.json");
        var reader = ConfigReader.FromFile(path, out var doc);
        using (doc)
        {
            string? cls = doc.RootElement.TryGetProperty("_class_name", out var c) && c.ValueKind == JsonValueKind.String
                ? c.GetString() : null;
            return cls switch
            {
                "UNet2DConditionModel" => new UNet2DConditionModel(UNet2DConditionConfig.Read(reader)),
                "UNet2DModel" => new UNet2DModel(UNet2DConfig.Read(reader)),
                _ => throw new DiffusionCacheException(
                    $"{path}: _class_name '{cls ?? "(missing)"}' is not a supported U-Net (UNet2DConditionModel, UNet2DModel)"),
            };
        }
    }
}
