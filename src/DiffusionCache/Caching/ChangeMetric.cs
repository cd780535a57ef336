using static TorchSharp.torch;

namespace DiffusionCache.Caching;

/// <summary>How much a tensor moved: the relative L1 change Block Caching's profile is made of (eq. 6), measured at
/// run time by the adaptive policies on what they can see (inputs, probes).</summary>
/// <remarks>The means reduce in the tensor's own precision (float32 for half and bfloat16), in one fused pass for
/// float32/64 (<c>l1_loss</c>, a 1-norm; the 1-norm agrees with a float64 mean to 3·10⁻⁵ relative, against 10⁻⁶ for
/// abs-then-mean, far below the thresholds' two or three significant digits): the decision is a threshold comparison, and a float64 reduction — a cast copy
/// of the whole tensor first — cost 4–5× as much, and the difference-then-abs-then-mean form still 2.2 % of a step
/// summed over online Block Caching's blocks (issue #13's overhead bar is 2 %). Generations of the embedded model with
/// online Block Caching and ucache made the same decisions and images bit for bit with each form.</remarks>
public static class ChangeMetric
{
    /// <summary>mean |current − previous| / mean |previous|; 0 when both are zero, +∞ when only
    /// <paramref name="previous"/> is.</summary>
    /// <param name="current">The tensor now.</param>
    /// <param name="previous">The same tensor at the reference step; same shape.</param>
    public static double RelativeL1(Tensor current, Tensor previous) =>
        RelativeL1(current, previous, MeanAbsolute(previous));

    /// <summary><see cref="RelativeL1(Tensor, Tensor)"/> with mean |previous| already known (a policy that compares
    /// several calls against one stored tensor computes it once, when it stores it).</summary>
    /// <param name="current">The tensor now.</param>
    /// <param name="previous">The same tensor at the reference step; same shape.</param>
    /// <param name="previousMeanAbsolute"><see cref="MeanAbsolute"/> of <paramref name="previous"/>.</param>
    public static double RelativeL1(Tensor current, Tensor previous, double previousMeanAbsolute)
    {
        double difference = MeanAbsoluteDifference(current, previous);
        return previousMeanAbsolute > 0 ? difference / previousMeanAbsolute : difference == 0 ? 0 : double.PositiveInfinity;
    }

    /// <summary>mean |current − previous|.</summary>
    /// <param name="current">The tensor now.</param>
    /// <param name="previous">The same tensor at the reference step; same shape.</param>
    public static double MeanAbsoluteDifference(Tensor current, Tensor previous)
    {
        if (!current.shape.SequenceEqual(previous.shape))
            throw new DiffusionCacheException($"change of a tensor whose shape changed: [{string.Join(",", previous.shape)}] -> [{string.Join(",", current.shape)}]");
        using var scope = NewDisposeScope();
        // One fused pass (no difference tensor) where the type allows: the decision runs at every call of every block.
        return current.dtype is ScalarType.Float32 or ScalarType.Float64 && previous.dtype == current.dtype
            ? Scalar(nn.functional.l1_loss(current, previous))
            : Mean((current - previous).abs_());
    }

    /// <summary>mean |x|.</summary>
    /// <param name="x">Any tensor.</param>
    public static double MeanAbsolute(Tensor x)
    {
        using var scope = NewDisposeScope();
        return x.dtype is ScalarType.Float32 or ScalarType.Float64 && x.numel() > 0
            ? Scalar(linalg.vector_norm(x, 1)) / x.numel()
            : Mean(x.abs());
    }

    private static double Scalar(Tensor x) => x.dtype == ScalarType.Float64 ? x.item<double>() : x.item<float>();

    private static double Mean(Tensor x) => x.dtype switch
    {
        ScalarType.Float64 => x.mean().item<double>(),
        ScalarType.Float32 => x.mean().item<float>(),
        _ => x.mean([], false, ScalarType.Float32).item<float>(),
    };
}
