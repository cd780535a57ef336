using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Evaluation;

/// <summary>Mean and covariance of a feature set (float64), and the Fréchet distance between two such Gaussians:
/// FID = |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)).</summary>
public sealed class FeatureStatistics : IDisposable
{
    /// <summary>mu, float64 [D]; owned by this instance.</summary>
    public Tensor Mean { get; }
    /// <summary>S, the unbiased sample covariance (divide by N - 1), float64 [D, D]; owned by this instance.</summary>
    public Tensor Covariance { get; }
    /// <summary>N, the number of feature vectors.</summary>
    public long Count { get; }

    private FeatureStatistics(Tensor mean, Tensor covariance, long count)
    {
        Mean = mean;
        Covariance = covariance;
        Count = count;
    }

    /// <summary>Statistics from stored moments (e.g. read back from a partial result); takes ownership of the
    /// tensors.</summary>
    /// <param name="mean">mu, float64 [D].</param>
    /// <param name="covariance">S, float64 [D, D].</param>
    /// <param name="count">N, the number of feature vectors they summarise.</param>
    /// <exception cref="DiffusionCacheException">Shapes or dtypes that do not fit.</exception>
    public static FeatureStatistics FromMoments(Tensor mean, Tensor covariance, long count)
    {
        ArgumentNullException.ThrowIfNull(mean);
        ArgumentNullException.ThrowIfNull(covariance);
        if (mean.dim() != 1 || covariance.dim() != 2 || covariance.shape[0] != mean.shape[0] || covariance.shape[1] != mean.shape[0]
            || mean.dtype != ScalarType.Float64 || covariance.dtype != ScalarType.Float64 || count < 2)
            throw new DiffusionCacheException("feature statistics need a float64 mean [D], a float64 covariance [D, D] and N >= 2");
        return new FeatureStatistics(mean, covariance, count);
    }

    /// <summary>The statistics of a feature set, in float64 on the features' device.</summary>
    /// <param name="features">[N, D], N &gt;= 2.</param>
    /// <exception cref="DiffusionCacheException">The features are not [N, D] with N &gt;= 2.</exception>
    public static FeatureStatistics Of(Tensor features)
    {
        if (features.dim() != 2 || features.shape[0] < 2) throw new DiffusionCacheException("feature statistics need [N, D] with N >= 2");
        using var scope = NewDisposeScope();
        var f = features.to(ScalarType.Float64);
        var mean = f.mean([0]);
        var centered = f - mean;
        var cov = centered.t().matmul(centered) / (f.shape[0] - 1);
        return new FeatureStatistics(mean.MoveToOuterDisposeScope(), cov.MoveToOuterDisposeScope(), f.shape[0]);
    }

    /// <summary>Tr((S1 S2)^(1/2)) is computed as the sum of square roots of the eigenvalues of the symmetric PSD
    /// matrix S1^(1/2) S2 S1^(1/2), which has the same spectrum and avoids a non-symmetric matrix square root.</summary>
    public double FrechetDistance(FeatureStatistics other)
    {
        using var scope = NewDisposeScope();
        var diff = (Mean - other.Mean).pow(2).sum().item<double>();
        var sqrt1 = SymmetricSqrt(Covariance);
        var middle = sqrt1.matmul(other.Covariance).matmul(sqrt1);
        middle = (middle + middle.t()) / 2;
        var traceSqrt = linalg.eigvalsh(middle).clamp_min(0).sqrt().sum().item<double>();
        return diff + Covariance.trace().item<double>() + other.Covariance.trace().item<double>() - 2 * traceSqrt;
    }

    private static Tensor SymmetricSqrt(Tensor s)
    {
        var (values, vectors) = linalg.eigh((s + s.t()) / 2);
        return vectors.matmul(diag(values.clamp_min(0).sqrt())).matmul(vectors.t());
    }

    /// <summary>Frees <see cref="Mean"/> and <see cref="Covariance"/>.</summary>
    public void Dispose()
    {
        Mean.Dispose();
        Covariance.Dispose();
    }
}
