using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Evaluation;

/// <summary>
/// KID, the kernel distance of Bińkowski et al. 2018 ("Demystifying MMD GANs"): the unbiased estimate of the squared
/// maximum mean discrepancy between two feature sets under the cubic polynomial kernel k(x, y) = (x·y/d + 1)^3.
/// Unlike FID it has an unbiased estimator, so its values at small sample sizes are comparable with those at large
/// ones; it can be slightly negative when the two distributions are the same. Everything is computed in float64.
/// </summary>
public static class KernelDistance
{
    /// <summary>Rows per block when a kernel matrix is too large to hold (the reference set).</summary>
    private const long Block = 1024;

    /// <summary>The kernel matrix k(x_i, y_j) = (x_i·y_j/d + 1)^3, float64 [N, M].</summary>
    /// <param name="x">[N, D].</param>
    /// <param name="y">[M, D].</param>
    public static Tensor PolynomialKernel(Tensor x, Tensor y)
    {
        CheckPair(x, y);
        using var scope = NewDisposeScope();
        var x64 = x.to(ScalarType.Float64);
        var y64 = y.to(ScalarType.Float64);
        return (x64.matmul(y64.t()) / x.shape[1] + 1).pow(3).MoveToOuterDisposeScope();
    }

    /// <summary>Unbiased MMD² between the distributions of <paramref name="x"/> and <paramref name="y"/>:
    /// mean_{i≠j} k(x_i, x_j) + mean_{i≠j} k(y_i, y_j) - 2 mean_{i,j} k(x_i, y_j). Symmetric in its arguments and
    /// invariant to the order of the rows. Large sets are processed in blocks of rows.</summary>
    /// <param name="x">[N, D], N &gt;= 2.</param>
    /// <param name="y">[M, D], M &gt;= 2.</param>
    public static double Kid(Tensor x, Tensor y)
    {
        CheckPair(x, y);
        return OffDiagonalMean(x) + OffDiagonalMean(y) - 2 * CrossMeans(x, y).mean().item<double>();
    }

    /// <summary>mean_{i≠j} k(x_i, x_j) over the rows of <paramref name="x"/> [N, D], N &gt;= 2.</summary>
    public static double OffDiagonalMean(Tensor x)
    {
        if (x.dim() != 2 || x.shape[0] < 2) throw new DiffusionCacheException("KID needs [N, D] features with N >= 2");
        long n = x.shape[0];
        double sum = 0, diagonal = 0;
        for (long i = 0; i < n; i += Block)
        {
            using var scope = NewDisposeScope();
            var k = PolynomialKernel(x.narrow(0, i, Math.Min(Block, n - i)), x);
            sum += k.sum().item<double>();
            diagonal += k.diagonal(offset: i).sum().item<double>();
        }
        return (sum - diagonal) / (n * (n - 1.0));
    }

    /// <summary>For each row x_i of <paramref name="x"/>, mean_j k(x_i, y_j) over the rows of <paramref name="y"/>:
    /// float64 [N].</summary>
    public static Tensor CrossMeans(Tensor x, Tensor y)
    {
        CheckPair(x, y);
        using var scope = NewDisposeScope();
        var parts = new List<Tensor>();
        for (long i = 0; i < x.shape[0]; i += Block)
            parts.Add(PolynomialKernel(x.narrow(0, i, Math.Min(Block, x.shape[0] - i)), y).mean([1]));
        return cat(parts).MoveToOuterDisposeScope();
    }

    private static void CheckPair(Tensor x, Tensor y)
    {
        if (x.dim() != 2 || y.dim() != 2 || x.shape[1] != y.shape[1] || x.shape[0] < 1 || y.shape[0] < 1)
            throw new DiffusionCacheException($"KID needs two non-empty feature sets [N, D] and [M, D] (got [{string.Join(", ", x.shape)}] and [{string.Join(", ", y.shape)}])");
    }
}
