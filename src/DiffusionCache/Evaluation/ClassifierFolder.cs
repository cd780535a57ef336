using DiffusionCache.Models.Loading;
using DiffusionCache.Pipelines;
using static TorchSharp.torch;

namespace DiffusionCache.Evaluation;

/// <summary>The shipped metric network: <c>config.json</c> + <c>model.safetensors</c>.</summary>
public static class ClassifierFolder
{
    /// <summary>Where the CLI looks for the metric network, relative to the working directory.</summary>
    public const string DefaultPath = "models/fashion-classifier";
    private const string Stem = "model";

    /// <summary>Writes <paramref name="model"/>'s <c>config.json</c> and <c>model.safetensors</c> into
    /// <paramref name="dir"/>, replacing the folder as a whole (built beside it, then moved into place).</summary>
    public static void Save(string dir, FashionClassifier model)
    {
        string? parent = Path.GetDirectoryName(Path.GetFullPath(dir));
        LatentPipelineFolder.WriteComponent(parent!, Path.GetFileName(Path.GetFullPath(dir)), FashionClassifier.ConfigJson, model, Stem);
    }

    /// <summary>Loads the metric network from <paramref name="dir"/> as float32 on the CPU, in eval mode; the caller
    /// disposes it.</summary>
    /// <exception cref="DiffusionCacheException">The folder has no <c>config.json</c> (the message says how to train
    /// one) or its weights do not fit.</exception>
    public static FashionClassifier Load(string dir)
    {
        if (!File.Exists(Path.Combine(dir, "config.json")))
            throw new DiffusionCacheException($"{dir}: metric classifier not found (train it with 'diffcache train classifier')");
        var model = ComponentLoader.LoadWeights(new FashionClassifier(), dir, null, ScalarType.Float32, null, Stem);
        model.eval();
        return model;
    }
}
