using static TorchSharp.torch;

namespace DiffusionCache.Caching;

/// <summary>How much a tensor moved: the relative L1 change Block Caching's profile is made of (eq. 6), measured at
/// run time by the adaptive policies on what they can see (inputs, probes).</summary>
public static class ChangeMetric
{
    /// <summary>mean |current − previous| / mean |previous|, accumulated in float64 on the tensors' device; 0 when
    /// both are zero, +∞ when only <paramref name="previous"/> is.</summary>
    /// <param name="current">The tensor now.</param>
    /// <param name="previous">The same tensor at the reference step; same shape.</param>
    public static double RelativeL1(Tensor current, Tensor previous)
    {
        double difference = MeanAbsoluteDifference(current, previous);
        using var norm = previous.abs().mean([], false, ScalarType.Float64);
        double n = norm.item<double>();
        return n > 0 ? difference / n : difference == 0 ? 0 : double.PositiveInfinity;
    }

    /// <summary>mean |current − previous|, accumulated in float64.</summary>
    /// <param name="current">The tensor now.</param>
    /// <param name="previous">The same tensor at the reference step; same shape.</param>
    public static double MeanAbsoluteDifference(Tensor current, Tensor previous)
    {
        if (!current.shape.SequenceEqual(previous.shape))
            throw new DiffusionCacheException($"change of a tensor whose shape changed: [{string.Join(",", previous.shape)}] -> [{string.Join(",", current.shape)}]");
        using var scope = NewDisposeScope();
        return (current - previous).abs().mean([], false, ScalarType.Float64).item<double>();
    }
}
