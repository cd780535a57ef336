using DiffusionCache.Evaluation;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Evaluation;

public class BootstrapTests
{
    [Fact]
    public void Counts_are_resamples_of_n_and_deterministic_per_seed()
    {
        using var a = Bootstrap.Counts(50, 30, seed: 3);
        using var b = Bootstrap.Counts(50, 30, seed: 3);
        using var c = Bootstrap.Counts(50, 30, seed: 4);
        Assert.Equal(new long[] { 30, 50 }, a.shape);
        Assert.True(a.sum(1).eq(50).all().item<bool>());
        Assert.True(a.ge(0).all().item<bool>() && a.eq(a.round()).all().item<bool>());
        Assert.True(a.eq(b).all().item<bool>());
        Assert.False(c.eq(a).all().item<bool>());
        // with replacement: some sample is drawn twice in almost every resample of 50
        Assert.True(a.max().item<double>() >= 2);
    }

    [Fact]
    public void Percentile_interval_takes_the_outer_quantiles()
    {
        var values = Enumerable.Range(0, 101).Select(i => (double)(100 - i)).ToList();   // order must not matter
        var interval = Bootstrap.Percentile(42, values, 0.95);
        Assert.Equal(42, interval.Estimate);
        Assert.Equal(2.5, interval.Lower, 12);
        Assert.Equal(97.5, interval.Upper, 12);
        var narrow = Bootstrap.Percentile(42, values, 0.5);
        Assert.Equal(25, narrow.Lower, 12);
        Assert.Equal(75, narrow.Upper, 12);
    }

    [Fact]
    public void Percentile_interval_leaves_out_undefined_replicates()
    {
        // KID of a resample that drew one sample n times is NaN (no pair of distinct samples): likely at tiny N.
        var values = Enumerable.Range(0, 101).Select(i => (double)i).Append(double.NaN).Prepend(double.NaN).ToList();
        var interval = Bootstrap.Percentile(42, values, 0.95);
        Assert.Equal(2.5, interval.Lower, 12);
        Assert.Equal(97.5, interval.Upper, 12);
        var none = Bootstrap.Percentile(42, [double.NaN, double.NaN], 0.95);
        Assert.Equal(42, none.Estimate);
        Assert.True(double.IsNaN(none.Lower) && double.IsNaN(none.Upper));
    }

    [Fact]
    public void Wilson_interval_matches_the_textbook_value()
    {
        var i = Bootstrap.Wilson(8, 10);
        Assert.Equal(0.8, i.Estimate, 12);
        Assert.Equal(0.4902, i.Lower, 4);
        Assert.Equal(0.9433, i.Upper, 4);
        var zero = Bootstrap.Wilson(0, 20);
        Assert.Equal(0, zero.Lower, 12);
        Assert.True(zero.Upper > 0.1 && zero.Upper < 0.2, $"{zero.Upper}");   // 0.161
        var all = Bootstrap.Wilson(1000, 1000);
        Assert.Equal(1, all.Upper, 12);
        Assert.True(all.Lower is > 0.99 and < 1);
        Assert.Throws<DiffusionCacheException>(() => Bootstrap.Wilson(11, 10));
    }

    [Fact]
    public void Normal_quantile_of_common_levels()
    {
        Assert.Equal(1.959964, Bootstrap.NormalQuantile(0.95), 5);
        Assert.Equal(2.575829, Bootstrap.NormalQuantile(0.99), 5);
        Assert.Equal(0.674490, Bootstrap.NormalQuantile(0.5), 5);
    }

    [Fact]
    public void Resampled_feature_statistics_equal_those_of_the_written_out_resample()
    {
        using var f = randn([6, 3], ScalarType.Float64, generator: new Generator(1));
        using var counts = tensor(new double[] { 0, 2, 1, 0, 3, 1 });
        using var expanded = f.repeat_interleave(tensor(new long[] { 0, 2, 1, 0, 3, 1 }), dim: 0);
        using var weighted = FeatureStatistics.Of(f, counts);
        using var direct = FeatureStatistics.Of(expanded);
        Assert.Equal(7, weighted.Count);
        Assert.True(weighted.Mean.allclose(direct.Mean, rtol: 1e-12, atol: 1e-12));
        Assert.True(weighted.Covariance.allclose(direct.Covariance, rtol: 1e-12, atol: 1e-12));
    }
}
