using DiffusionCache.Models.Autoencoders;
using DiffusionCache.Models.Config;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Models.Loading;

/// <summary>Builds an <see cref="AutoencoderKL"/> from a diffusers model folder (<c>config.json</c> +
/// <c>diffusion_pytorch_model.safetensors</c>), loading the weights strictly.</summary>
public static class AutoencoderLoader
{
    /// <summary>Builds the VAE from the folder's <c>config.json</c> and loads its weights strictly.</summary>
    /// <param name="modelDir">A diffusers component folder, e.g. a pipeline's <c>vae</c>.</param>
    /// <param name="dtype">Compute type; weights of another type are converted on load. SD VAEs set
    /// <c>force_upcast</c> because they overflow in float16; that choice is the caller's (see
    /// <see cref="AutoencoderKLConfig.ForceUpcast"/>).</param>
    /// <param name="device">Where the model is placed before loading; null leaves it on the default device.</param>
    /// <param name="variant">Weights variant such as "fp16" (<c>diffusion_pytorch_model.fp16.safetensors</c>);
    /// null loads the float32 file, or the fp16 one when that is all the folder has.</param>
    /// <returns>The loaded model, in eval mode; the caller owns it.</returns>
    /// <exception cref="DiffusionCacheException">The folder, config or weights are missing or invalid
    /// (<see cref="CheckpointMismatchException"/> when the weights do not fit the config).</exception>
    public static AutoencoderKL Load(string modelDir, ScalarType dtype = ScalarType.Float32, Device? device = null,
        string? variant = null)
    {
        return ComponentLoader.LoadWeights(Create(modelDir), modelDir, variant, dtype, device);
    }

    /// <summary>Reads <c>config.json</c> and builds the model with freshly initialised weights.</summary>
    public static AutoencoderKL Create(string modelDir)
    {
        if (!Directory.Exists(modelDir)) throw new DiffusionCacheException($"{modelDir}: model folder not found");
        return new AutoencoderKL(AutoencoderKLConfig.FromFile(Path.Combine(modelDir, "config.json")));
    }
}
