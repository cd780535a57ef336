using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Evaluation;

/// <summary>A named feature space for FID and KID: the features of one <see cref="MetricNetwork"/>. Values measured
/// in different spaces compare only within their space; agreement between independent spaces is what makes a
/// ranking of methods credible.</summary>
/// <param name="Name">How reports name the space (e.g. "classifier", "resnet").</param>
/// <param name="Network">The metric network; the caller owns and disposes it.</param>
public sealed record FeatureSpace(string Name, MetricNetwork Network)
{
    /// <summary>The network's features [N, D] of images in [-1, 1] ([N, 1, 32, 32]), in eval mode, without
    /// gradients, <paramref name="batch"/> images at a time.</summary>
    public Tensor Features(Tensor images, int batch = 500)
    {
        if (batch < 1) throw new DiffusionCacheException("batch must be positive");
        using var noGrad = no_grad();
        Network.eval();
        var parts = new List<Tensor>();
        try
        {
            for (long i = 0; i < images.shape[0]; i += batch)
                parts.Add(Network.Features(images.narrow(0, i, Math.Min(batch, images.shape[0] - i))));
            return cat(parts);
        }
        finally
        {
            foreach (var p in parts) p.Dispose();
        }
    }
}

/// <summary>A reference set's features in one <see cref="FeatureSpace"/> with what FID and KID against it need,
/// computed once: the Gaussian statistics and the mean kernel value between distinct reference samples.</summary>
public sealed class ReferenceFeatures : IDisposable
{
    /// <summary>The feature space's name.</summary>
    public string Space { get; }
    /// <summary>The reference features, float64 [M, D]; owned by this instance.</summary>
    public Tensor Features { get; }
    /// <summary>Mean and covariance of <see cref="Features"/>; owned by this instance.</summary>
    public FeatureStatistics Statistics { get; }
    /// <summary>mean_{i≠j} k(y_i, y_j), KID's reference term.</summary>
    public double KernelSelfMean { get; }

    private ReferenceFeatures(string space, Tensor features, FeatureStatistics statistics, double kernelSelfMean)
    {
        Space = space;
        Features = features;
        Statistics = statistics;
        KernelSelfMean = kernelSelfMean;
    }

    /// <summary>The reference features of <paramref name="images"/> (e.g. the Fashion-MNIST test split) in
    /// <paramref name="space"/>.</summary>
    public static ReferenceFeatures Of(FeatureSpace space, Tensor images)
    {
        using var features = space.Features(images);
        return Of(space.Name, features);
    }

    /// <summary>Reference statistics of precomputed features [M, D], M &gt;= 2 (copied to float64).</summary>
    public static ReferenceFeatures Of(string space, Tensor features)
    {
        Tensor f;
        using (var scope = NewDisposeScope())
            f = features.detach().to(ScalarType.Float64).clone().MoveToOuterDisposeScope();
        try
        {
            return new ReferenceFeatures(space, f, FeatureStatistics.Of(f), KernelDistance.OffDiagonalMean(f));
        }
        catch
        {
            f.Dispose();
            throw;
        }
    }

    /// <summary>FID of a feature set [N, D] (N &gt;= 2) against this reference, in float64.</summary>
    public double Fid(Tensor features)
    {
        using var stats = FeatureStatistics.Of(features);
        return Statistics.FrechetDistance(stats);
    }

    /// <summary>Unbiased KID of a feature set [N, D] (N &gt;= 2) against this reference, in float64 (the reference
    /// term is the precomputed <see cref="KernelSelfMean"/>). Unbiased at any N, so a subset of a large set gives
    /// the same value in expectation.</summary>
    public double Kid(Tensor features)
    {
        using var f = features.to(ScalarType.Float64, Features.device);
        using var cross = KernelDistance.CrossMeans(f, Features);
        return KernelDistance.OffDiagonalMean(f) + KernelSelfMean - 2 * cross.mean().item<double>();
    }

    /// <summary>Frees the features and statistics.</summary>
    public void Dispose()
    {
        Features.Dispose();
        Statistics.Dispose();
    }
}
