using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Evaluation;

/// <summary>A network whose features define a feature space for FID and KID, and whose logits classify the 10
/// Fashion-MNIST classes: input [B, 1, 32, 32] in [-1, 1], <c>forward</c> returns logits [B, 10].</summary>
public abstract class MetricNetwork : nn.Module<Tensor, Tensor>
{
    /// <summary>Names the module (TorchSharp's module name).</summary>
    /// <param name="name">The module name.</param>
    protected MetricNetwork(string name) : base(name) { }

    /// <summary>D, the width of <see cref="Features"/>.</summary>
    public abstract int FeatureSize { get; }

    /// <summary>The features [B, D] that FID and KID are computed on.</summary>
    /// <param name="images">[B, 1, 32, 32] in [-1, 1].</param>
    public abstract Tensor Features(Tensor images);

    /// <summary>The <c>config.json</c> written beside the weights; its <c>_class_name</c> says which network
    /// <see cref="ClassifierFolder.LoadNetwork"/> builds.</summary>
    public abstract string ToConfigJson();
}
