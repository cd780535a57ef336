using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DiffusionCache.Models.Layers;

/// <summary>Normalisation layers initialised as PyTorch initialises them.</summary>
public static class Norms
{
    /// <summary>An affine <c>GroupNorm</c> with weight 1 and bias 0. TorchSharp 0.107's <c>nn.GroupNorm</c>
    /// allocates its affine parameters with <c>torch.empty</c> and never initialises them, so a model that is
    /// trained rather than loaded would start from whatever was in memory (often NaN).</summary>
    public static GroupNorm GroupNorm(long groups, long channels, double eps)
    {
        var norm = nn.GroupNorm(groups, channels, eps, affine: true);
        using (no_grad())
        {
            norm.weight.fill_(1.0);
            norm.bias!.zero_();
        }
        return norm;
    }
}
