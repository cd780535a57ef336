namespace DiffusionCache.Evaluation;

/// <summary>One method's measured points on a speed–quality plane: (speedup, value with interval), read between
/// points by linear interpolation — how a frontier compares methods "at the same speedup" when no two methods land
/// on exactly the same speed.</summary>
public sealed class FrontierLine
{
    private readonly (double Speedup, Interval Value)[] _points;

    /// <summary>The line through <paramref name="points"/> (any order; sorted by speedup).</summary>
    /// <exception cref="DiffusionCacheException">No points, or a speedup that is not a positive finite number.</exception>
    public FrontierLine(IEnumerable<(double Speedup, Interval Value)> points)
    {
        ArgumentNullException.ThrowIfNull(points);
        _points = [.. points.OrderBy(p => p.Speedup)];
        if (_points.Length == 0) throw new DiffusionCacheException("a frontier line needs at least one point");
        if (_points.Any(p => !(p.Speedup > 0) || !double.IsFinite(p.Speedup)))
            throw new DiffusionCacheException("frontier speedups must be positive finite numbers");
    }

    /// <summary>The lowest and highest measured speedup.</summary>
    public (double Low, double High) Range => (_points[0].Speedup, _points[^1].Speedup);

    /// <summary>The value at <paramref name="speedup"/>: estimate and interval ends interpolated linearly between the
    /// two neighbouring points (the interval so read is an approximation: the points' intervals are independent);
    /// null outside the measured range, which a line never extrapolates.</summary>
    public Interval? At(double speedup)
    {
        if (speedup < _points[0].Speedup || speedup > _points[^1].Speedup) return null;
        for (int i = 1; i < _points.Length; i++)
        {
            var (a, b) = (_points[i - 1], _points[i]);
            if (speedup > b.Speedup) continue;
            if (b.Speedup == a.Speedup) return b.Value;
            double w = (speedup - a.Speedup) / (b.Speedup - a.Speedup);
            double Mix(double x, double y) => x + w * (y - x);
            return new Interval(Mix(a.Value.Estimate, b.Value.Estimate), Mix(a.Value.Lower, b.Value.Lower), Mix(a.Value.Upper, b.Value.Upper));
        }
        return _points[0].Value;   // a single point, asked at its own speedup
    }

    /// <summary>Which is lower (better, for FID and KID) beyond the intervals: -1 when <paramref name="first"/>'s
    /// whole interval lies below <paramref name="second"/>'s, +1 when above, 0 when they overlap.</summary>
    public static int CompareLower(Interval first, Interval second) =>
        first.Upper < second.Lower ? -1 : first.Lower > second.Upper ? 1 : 0;
}
