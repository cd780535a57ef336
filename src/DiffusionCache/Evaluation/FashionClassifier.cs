using System.Text.Json;
using DiffusionCache.Models.Config;
using DiffusionCache.Models.Layers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DiffusionCache.Evaluation;

/// <summary>
/// The feature network of our quality metrics: a small CNN trained on Fashion-MNIST (32x32x1 in [-1, 1]).
/// Three conv stages (32, 64, 128 channels, GroupNorm, SiLU, 2x2 pooling), global average pooling, a 256-wide
/// feature layer and the 10-way classifier. FID is computed on the 256-d penultimate features: it is FID in this
/// network's feature space, not Inception-FID, so its values compare only with each other.
/// </summary>
public sealed class FashionClassifier : MetricNetwork
{
    /// <summary>Width of the penultimate features that FID is computed on.</summary>
    public const int FeatureDim = 256;
    /// <summary>Number of classes, as Fashion-MNIST's.</summary>
    public const int NumClasses = 10;

    private readonly Sequential _features;
    private readonly Linear _embed;
    private readonly Dropout _dropout;
    private readonly Linear _head;

    /// <summary>An untrained network (TorchSharp's default initialization), float32 on the CPU.</summary>
    public FashionClassifier() : base(nameof(FashionClassifier))
    {
        _features = nn.Sequential(
            Stage(1, 32), Stage(32, 64), Stage(64, 128));
        _embed = nn.Linear(128, FeatureDim);
        _dropout = nn.Dropout(0.3);
        _head = nn.Linear(FeatureDim, NumClasses);
        register_module("features", _features);
        register_module("embed", _embed);
        register_module("dropout", _dropout);   // no parameters, but train()/eval() must reach it
        register_module("head", _head);
    }

    /// <summary>Submodules are registered explicitly under their checkpoint names; TorchSharp's reflective
    /// registration would add them again under C# field names.</summary>
    protected override void RegisterComponents() { }

    private static Sequential Stage(int inChannels, int outChannels) => nn.Sequential(
        nn.Conv2d(inChannels, outChannels, 3, padding: 1), Norms.GroupNorm(8, outChannels, 1e-5), nn.SiLU(),
        nn.Conv2d(outChannels, outChannels, 3, padding: 1), Norms.GroupNorm(8, outChannels, 1e-5), nn.SiLU(),
        nn.MaxPool2d(2));

    /// <summary>Class logits [B, 10].</summary>
    public override Tensor forward(Tensor images)
    {
        using var features = Features(images);
        using var dropped = _dropout.call(features);
        return _head.call(dropped);
    }

    /// <inheritdoc/>
    public override int FeatureSize => FeatureDim;

    /// <summary>The penultimate features [B, 256] (after SiLU), used for FID.</summary>
    public override Tensor Features(Tensor images)
    {
        using var scope = NewDisposeScope();
        var h = _features.call(images).mean([2, 3]);
        return nn.functional.silu(_embed.call(h)).MoveToOuterDisposeScope();
    }

    /// <summary>The <c>config.json</c> written beside the weights (class name, feature size, classes, input).
    /// </summary>
    public static string ConfigJson => JsonSerializer.Serialize(new Dictionary<string, object>
    {
        ["_class_name"] = nameof(FashionClassifier),
        ["feature_dim"] = FeatureDim,
        ["num_classes"] = NumClasses,
        ["input"] = "32x32x1 in [-1, 1]",
    }, new JsonSerializerOptions { WriteIndented = true });

    /// <inheritdoc/>
    public override string ToConfigJson() => ConfigJson;
}
