using DiffusionCache.Formats;
using DiffusionCache.Formats.Diffusers;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Models.Loading;

/// <summary>The part every component loader shares: place a freshly built model, then fill it from the folder's
/// weights (or any tensor source) strictly. The model is disposed if anything fails.</summary>
public static class ComponentLoader
{
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
