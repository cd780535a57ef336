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

    private Tensor? _sqrtCovariance;

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

    /// <summary>The statistics of a resample of a feature set given by multiplicities (a bootstrap resample: row i
    /// drawn <paramref name="counts"/>[i] times): the same as <see cref="Of(Tensor)"/> on the resample with its
    /// duplicate rows written out, without building it.</summary>
    /// <param name="features">[N, D].</param>
    /// <param name="counts">[N], non-negative integers (any float or integer type) summing to at least 2.</param>
    /// <exception cref="DiffusionCacheException">Shapes do not fit or the counts sum to less than 2.</exception>
    public static FeatureStatistics Of(Tensor features, Tensor counts)
    {
        if (features.dim() != 2 || counts.dim() != 1 || counts.shape[0] != features.shape[0])
            throw new DiffusionCacheException("resampled feature statistics need [N, D] features and [N] counts");
        using var scope = NewDisposeScope();
        var f = features.to(ScalarType.Float64);
        var w = counts.to(ScalarType.Float64, f.device);
        double n = w.sum().item<double>();
        if (n < 2) throw new DiffusionCacheException("feature statistics need at least 2 samples");
        var mean = w.matmul(f) / n;
        var centered = f - mean;
        var cov = (centered * w.unsqueeze(1)).t().matmul(centered) / (n - 1);
        return new FeatureStatistics(mean.MoveToOuterDisposeScope(), cov.MoveToOuterDisposeScope(), (long)Math.Round(n));
    }

    /// <summary>Tr((S1 S2)^(1/2)) is computed as the sum of square roots of the eigenvalues of the symmetric PSD
    /// matrix S1^(1/2) S2 S1^(1/2), which has the same spectrum and avoids a non-symmetric matrix square root.
    /// S1^(1/2) (this instance's) is computed once and kept, so call it on the fixed reference statistics when
    /// comparing many sample sets against them.</summary>
    public double FrechetDistance(FeatureStatistics other)
    {
        using var scope = NewDisposeScope();
        var diff = (Mean - other.Mean).pow(2).sum().item<double>();
        _sqrtCovariance ??= SymmetricSqrt(Covariance).DetachFromDisposeScope();
        var sqrt1 = _sqrtCovariance;
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
        _sqrtCovariance?.Dispose();
    }
}
