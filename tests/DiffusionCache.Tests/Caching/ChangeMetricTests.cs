using DiffusionCache.Caching;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Caching;

public sealed class ChangeMetricTests
{
    [Fact]
    public void Relative_L1_is_the_mean_change_over_the_mean_magnitude_of_the_previous_value()
    {
        using var previous = tensor(new float[] { 1, -3, 2, 2 });
        using var current = tensor(new float[] { 2, -3, 2, 0 });
        Assert.Equal((1 + 0 + 0 + 2) / 4.0 / ((1 + 3 + 2 + 2) / 4.0), ChangeMetric.RelativeL1(current, previous), 12);
        Assert.Equal(0.75, ChangeMetric.MeanAbsoluteDifference(current, previous), 12);
    }

    [Fact]
    public void Zero_previous_values_give_zero_or_infinity()
    {
        using var zero = zeros(3);
        using var one = ones(3);
        Assert.Equal(0, ChangeMetric.RelativeL1(zero, zero));
        Assert.Equal(double.PositiveInfinity, ChangeMetric.RelativeL1(one, zero));
    }

    [Fact]
    public void A_shape_change_is_an_error()
    {
        using var a = zeros(3);
        using var b = zeros(4);
        Assert.Throws<DiffusionCacheException>(() => ChangeMetric.RelativeL1(a, b));
    }
}
