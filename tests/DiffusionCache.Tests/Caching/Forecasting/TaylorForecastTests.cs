using DiffusionCache.Caching.Forecasting;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Caching.Forecasting;

public sealed class TaylorForecastTests
{
    private static Tensor Value(double v) => full([2, 3], v, ScalarType.Float64);

    private static double Predict(TaylorForecast f, double t)
    {
        using var p = f.Predict(t);
        return p[0, 0].item<double>();
    }

    [Fact]
    public void Order_0_is_the_last_value()
    {
        using var f = new TaylorForecast(0);
        foreach (var (t, v) in new[] { (900.0, 1.0), (800.0, 5.0) }) { using var x = Value(v); f.Record(t, x); }
        Assert.Equal(5.0, Predict(f, 100));
        Assert.Equal(2 * 3 * 8, f.Bytes);   // one value held
    }

    [Fact]
    public void Order_1_extrapolates_a_line_and_order_2_a_parabola_over_uneven_timesteps()
    {
        static double Line(double t) => 3 - 0.01 * t;
        static double Parabola(double t) => 1 + 0.002 * t + 1e-5 * t * t;
        double[] ts = [950, 700, 610];   // uneven: computed steps are not contiguous
        using var linear = new TaylorForecast(1);
        using var quadratic = new TaylorForecast(2);
        foreach (var t in ts)
        {
            using (var x = Value(Line(t))) linear.Record(t, x);
            using (var y = Value(Parabola(t))) quadratic.Record(t, y);
        }
        Assert.Equal(Line(400), Predict(linear, 400), 9);
        Assert.Equal(Parabola(400), Predict(quadratic, 400), 9);
        Assert.NotEqual(Parabola(400), Predict(linear, 400), 3);   // a line cannot follow the parabola
        Assert.Equal(3 * 2 * 3 * 8, quadratic.Bytes);
    }

    [Fact]
    public void With_fewer_points_than_the_order_it_uses_what_it_has()
    {
        using var f = new TaylorForecast(2);
        using (var x = Value(2)) f.Record(900, x);
        Assert.Equal(2, Predict(f, 500));
        using (var x = Value(4)) f.Record(800, x);
        Assert.Equal(6, Predict(f, 700), 9);   // linear from two points
    }

    [Fact]
    public void A_second_record_at_the_same_timestep_replaces_the_first()
    {
        using var f = new TaylorForecast(1);
        using (var x = Value(1)) f.Record(900, x);
        using (var x = Value(2)) f.Record(900, x);   // PLMS calls the model twice at its first timestep
        Assert.Equal(2, Predict(f, 100));
        Assert.Equal(2 * 3 * 8, f.Bytes);
    }

    [Fact]
    public void Records_a_copy_and_clears()
    {
        using var f = new TaylorForecast(0);
        using var x = Value(1);
        f.Record(900, x);
        x.fill_(7);
        Assert.Equal(1, Predict(f, 800));
        f.Clear();
        Assert.True(f.IsEmpty);
        Assert.Throws<InvalidOperationException>(() => f.Predict(1));
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(3)]
    public void Refuses_an_unsupported_order(int order) =>
        Assert.Contains($"order {order}", Assert.Throws<DiffusionCacheException>(() => new TaylorForecast(order)).Message);
}
