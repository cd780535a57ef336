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
    public void A_known_magnitude_of_the_previous_value_gives_the_same_change()
    {
        using var previous = randn(4, 8, 5, 5, generator: new TorchSharp.torch.Generator(3));
        using var current = previous + 0.1 * randn(4, 8, 5, 5, generator: new TorchSharp.torch.Generator(4));
        Assert.Equal(ChangeMetric.RelativeL1(current, previous),
            ChangeMetric.RelativeL1(current, previous, ChangeMetric.MeanAbsolute(previous)));
    }

    [Fact]
    public void Half_precision_tensors_are_reduced_in_float32_without_overflow()
    {
        // 70000 values of 1000 sum past float16's largest value (65504); the mean itself is representable.
        using var previous = full(70000, 1000f).to_type(ScalarType.Float16);
        using var current = full(70000, 1500f).to_type(ScalarType.Float16);
        Assert.Equal(1000, ChangeMetric.MeanAbsolute(previous), 6);
        Assert.Equal(0.5, ChangeMetric.RelativeL1(current, previous), 6);
    }

    [Fact]
    public void Float32_means_agree_with_a_float64_reduction()
    {
        using var previous = randn(32, 64, 16, 16, generator: new TorchSharp.torch.Generator(5));
        using var current = previous + 0.05 * randn(32, 64, 16, 16, generator: new TorchSharp.torch.Generator(6));
        using var p64 = previous.to_type(ScalarType.Float64);
        using var c64 = current.to_type(ScalarType.Float64);
        double exact = ChangeMetric.RelativeL1(c64, p64);
        // 10⁻⁴ relative: decisions compare against thresholds of two or three significant digits (the fused float32
        // 1-norm of mean |previous| lands about 3·10⁻⁵ off; a float16 accumulation would be ~10⁻³ off)
        Assert.Equal(exact, ChangeMetric.RelativeL1(current, previous), exact * 1e-4);
        Assert.Equal(ChangeMetric.MeanAbsolute(p64), ChangeMetric.MeanAbsolute(previous), ChangeMetric.MeanAbsolute(p64) * 1e-4);
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
