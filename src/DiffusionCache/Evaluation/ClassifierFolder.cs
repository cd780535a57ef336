using DiffusionCache.Models.Loading;
using DiffusionCache.Pipelines;
using static TorchSharp.torch;

namespace DiffusionCache.Evaluation;

/// <summary>The shipped metric network: <c>config.json</c> + <c>model.safetensors</c>.</summary>
public static class ClassifierFolder
{
    public const string DefaultPath = "models/fashion-classifier";
    private const string Stem = "model";

    public static void Save(string dir, FashionClassifier model)
    {
        string? parent = Path.GetDirectoryName(Path.GetFullPath(dir));
        LatentPipelineFolder.WriteComponent(parent!, Path.GetFileName(Path.GetFullPath(dir)), FashionClassifier.ConfigJson, model, Stem);
    }

    public static FashionClassifier Load(string dir)
    {
        if (!File.Exists(Path.Combine(dir, "config.json")))
            throw new DiffusionCacheException($"{dir}: metric classifier not found (train it with 'diffcache train classifier')");
        var model = ComponentLoader.LoadWeights(new FashionClassifier(), dir, null, ScalarType.Float32, null, Stem);
        model.eval();
        return model;
    }
}
