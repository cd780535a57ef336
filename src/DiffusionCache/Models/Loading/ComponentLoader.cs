using DiffusionCache.Formats;
using DiffusionCache.Formats.Diffusers;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Models.Loading;

/// <summary>The part every component loader shares: place a freshly built model, then fill it from the folder's
/// weights strictly. The model is disposed if anything fails.</summary>
public static class ComponentLoader
{
    public static T LoadWeights<T>(T model, string modelDir, string? variant, ScalarType dtype, Device? device,
        string stem = DiffusersWeights.DefaultStem, Func<string, bool>? isWeight = null) where T : nn.Module
    {
        try
        {
            if (device is not null) model.to(device);
            if (dtype != ScalarType.Float32) model.to(dtype);
            // A folder that ships only the fp16 variant (as our embedded model does) loads it, upcast to the model's type.
            variant ??= VariantConverter.Available(modelDir, stem);
            using var weights = DiffusersWeights.Open(modelDir, variant, stem);
            StateDictLoader.Load(model, isWeight is null ? weights : new FilteredTensorSource(weights, isWeight));
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }
}
