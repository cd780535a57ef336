using DiffusionCache.Evaluation;

namespace DiffusionCache.Tests.Evaluation;

public sealed class FrontierLineTests
{
    private static readonly FrontierLine Line = new([(3.0, new Interval(9, 8, 10)), (1.0, new Interval(5, 4, 6)), (2.0, new Interval(6, 5, 7))]);

    [Fact]
    public void Reads_between_points_linearly_in_speedup_whatever_order_they_came_in()
    {
        Assert.Equal(new Interval(5.5, 4.5, 6.5), Line.At(1.5));
        Assert.Equal(new Interval(7.5, 6.5, 8.5), Line.At(2.5));
        Assert.Equal(new Interval(6, 5, 7), Line.At(2.0));
        Assert.Equal((1.0, 3.0), Line.Range);
    }

    [Fact]
    public void Never_extrapolates()
    {
        Assert.Null(Line.At(0.99));
        Assert.Null(Line.At(3.01));
        Assert.Equal(new Interval(1, 0, 2), new FrontierLine([(2.0, new Interval(1, 0, 2))]).At(2.0));
    }

    [Fact]
    public void Compares_by_whole_intervals()
    {
        Assert.Equal(-1, FrontierLine.CompareLower(new Interval(1, 0, 2), new Interval(4, 3, 5)));
        Assert.Equal(1, FrontierLine.CompareLower(new Interval(4, 3, 5), new Interval(1, 0, 2)));
        Assert.Equal(0, FrontierLine.CompareLower(new Interval(2, 1, 3.5), new Interval(4, 3, 5)));
    }

    [Fact]
    public void Refuses_an_empty_line_and_bad_speedups()
    {
        Assert.Throws<DiffusionCacheException>(() => new FrontierLine([]));
        Assert.Throws<DiffusionCacheException>(() => new FrontierLine([(double.NaN, new Interval(1, 0, 2))]));
        Assert.Throws<DiffusionCacheException>(() => new FrontierLine([(0.0, new Interval(1, 0, 2))]));
    }
}
