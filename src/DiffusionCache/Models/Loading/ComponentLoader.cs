using DiffusionCache.Formats;
using DiffusionCache.Formats.Diffusers;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Models.Loading;

/// <summary>The part every component loader shares: place a freshly built model, then fill it from the folder's
/// weights (or any tensor source) strictly. The model is disposed if anything fails.</summary>
public static class ComponentLoader
{
    /// <summary>Places <paramref name="model"/> and fills it strictly from the weights in
    /// <paramref name="modelDir"/> (<c>{stem}[.{variant}].safetensors</c>, or shards with an index), converting
    /// each tensor to <paramref name="dtype"/> as it is read. The model is disposed if anything fails.</summary>
    /// <typeparam name="T">The model's type.</typeparam>
    /// <param name="model">A freshly built model, still float32 (it is converted only when
    /// <paramref name="dtype"/> differs from float32).</param>
    /// <param name="modelDir">The component folder.</param>
    /// <param name="variant">Weights variant such as "fp16"; null loads the float32 file, or the fp16 one when that
    /// is all the folder has.</param>
    /// <param name="dtype">The model's compute type.</param>
    /// <param name="device">Where the model is placed before loading; null leaves it where it is.</param>
    /// <param name="stem">File stem: <c>diffusion_pytorch_model</c> for diffusers, <c>model</c> for
    /// transformers.</param>
    /// <param name="isWeight">Keeps only the file's tensors it accepts (see
    /// <see cref="TextEncoderLoader.IsWeight"/>); null keeps all.</param>
    /// <returns><paramref name="model"/>, loaded.</returns>
    /// <exception cref="DiffusionCacheException">The weights are missing or invalid
    /// (<see cref="CheckpointMismatchException"/> when they do not fit the model).</exception>
    public static T LoadWeights<T>(T model, string modelDir, string? variant, ScalarType dtype, Device? device,
        string stem = DiffusersWeights.DefaultStem, Func<string, bool>? isWeight = null) where T : nn.Module
    {
        DiffusersWeights weights;
        try
        {
            // A folder that ships only the fp16 variant (as our embedded model does) loads it, upcast to the model's type.
            variant ??= VariantConverter.Available(modelDir, stem);
            weights = DiffusersWeights.Open(modelDir, variant, stem);
        }
        catch
        {
            model.Dispose();
            throw;
        }
        using (weights) return LoadWeights(model, weights, dtype, device, isWeight);
    }

    /// <summary>Fills <paramref name="model"/> strictly from any tensor source (a single-file checkpoint's component
    /// read through its key map, ...), converting each tensor to <paramref name="dtype"/> as it is read;
    /// <paramref name="isWeight"/> drops source tensors that are not weights (e.g. <see cref="TextEncoderLoader.IsWeight"/>).
    /// The model is disposed if anything fails; the source is the caller's.</summary>
    public static T LoadWeights<T>(T model, ITensorSource source, ScalarType dtype, Device? device,
        Func<string, bool>? isWeight = null) where T : nn.Module
    {
        ArgumentNullException.ThrowIfNull(source);
        try
        {
            if (device is not null) model.to(device);
            if (dtype != ScalarType.Float32) model.to(dtype);
            StateDictLoader.Load(model, isWeight is null ? source : new FilteredTensorSource(source, isWeight));
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }
}
