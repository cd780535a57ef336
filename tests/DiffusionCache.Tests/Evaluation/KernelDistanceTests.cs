using DiffusionCache.Evaluation;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Evaluation;

public class KernelDistanceTests
{
    private static Tensor Gaussian(long n, long d, double shift, ulong seed) =>
        randn([n, d], ScalarType.Float64, generator: new Generator(seed)) + shift;

    [Fact]
    public void Two_samples_of_one_distribution_are_near_zero_and_a_shift_is_not()
    {
        using var a = Gaussian(600, 8, 0, 1);
        using var b = Gaussian(600, 8, 0, 2);
        using var shifted = Gaussian(600, 8, 0.5, 3);
        double same = KernelDistance.Kid(a, b);
        double different = KernelDistance.Kid(a, shifted);
        Assert.True(different > 0.05, $"shifted KID {different}");
        Assert.True(Math.Abs(same) < different / 20, $"same-distribution KID {same} vs shifted {different}");
    }

    [Fact]
    public void Matches_a_hand_computed_case()
    {
        // d = 2. x·x' = 2 -> (2/2 + 1)^3 = 8 (and x2·x2 = 4 -> 27); y·y' = 3 -> (3/2 + 1)^3 = 15.625; every x·y = 0 -> 1.
        using var x = tensor(new double[,] { { 1, 0 }, { 2, 0 } });
        using var y = tensor(new double[,] { { 0, 1 }, { 0, 3 } });
        Assert.Equal(8 + 15.625 - 2 * 1, KernelDistance.Kid(x, y), 12);
        using var k = KernelDistance.PolynomialKernel(x, x);
        Assert.Equal(new[] { 8.0, 8.0, 27.0 }, new[] { k[0, 1].item<double>(), k[1, 0].item<double>(), k[1, 1].item<double>() });
    }

    [Fact]
    public void Is_symmetric_and_invariant_to_sample_order()
    {
        using var x = Gaussian(40, 5, 0, 4);
        using var y = Gaussian(70, 5, 0.3, 5);
        double kid = KernelDistance.Kid(x, y);
        Assert.Equal(kid, KernelDistance.Kid(y, x), 12);
        using var px = x.index_select(0, randperm(40, generator: new Generator(6)));
        using var py = y.index_select(0, randperm(70, generator: new Generator(7)));
        Assert.Equal(kid, KernelDistance.Kid(px, py), 12);
    }

    [Fact]
    public void Blocked_sums_match_the_whole_kernel_matrix()
    {
        using var x = Gaussian(1100, 3, 0, 8);   // more rows than one block
        using var y = Gaussian(30, 3, 1, 9);
        using var k = KernelDistance.PolynomialKernel(x, x);
        double expected = (k.sum().item<double>() - k.trace().item<double>()) / (1100.0 * 1099);
        Assert.Equal(expected, KernelDistance.OffDiagonalMean(x), 9);
        using var kxy = KernelDistance.PolynomialKernel(x, y);
        using var means = KernelDistance.CrossMeans(x, y);
        Assert.True(means.allclose(kxy.mean([1]), rtol: 1e-12, atol: 0));
    }

    [Fact]
    public void Float32_input_is_computed_in_float64()
    {
        using var x = Gaussian(20, 4, 0, 10);
        using var y = Gaussian(25, 4, 0.2, 11);
        using var x32 = x.to(ScalarType.Float32);
        using var y32 = y.to(ScalarType.Float32);
        using var x32as64 = x32.to(ScalarType.Float64);
        using var y32as64 = y32.to(ScalarType.Float64);
        Assert.Equal(KernelDistance.Kid(x32as64, y32as64), KernelDistance.Kid(x32, y32), 12);
    }

    [Fact]
    public void Rejects_mismatched_widths()
    {
        using var x = zeros(3, 4);
        using var y = zeros(3, 5);
        Assert.Throws<DiffusionCacheException>(() => KernelDistance.Kid(x, y));
    }
}
