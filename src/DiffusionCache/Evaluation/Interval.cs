namespace DiffusionCache.Evaluation;

/// <summary>A point estimate with a confidence interval [<see cref="Lower"/>, <see cref="Upper"/>].</summary>
/// <param name="Estimate">The statistic on the full sample.</param>
/// <param name="Lower">Lower end of the interval.</param>
/// <param name="Upper">Upper end of the interval.</param>
public readonly record struct Interval(double Estimate, double Lower, double Upper)
{
    /// <summary>Whether <paramref name="value"/> lies in [<see cref="Lower"/>, <see cref="Upper"/>].</summary>
    public bool Contains(double value) => value >= Lower && value <= Upper;

    /// <summary>"estimate [lower, upper]" with <paramref name="format"/> for each number (invariant culture).</summary>
    public string ToString(string format) => string.Create(System.Globalization.CultureInfo.InvariantCulture,
        $"{Estimate.ToString(format, System.Globalization.CultureInfo.InvariantCulture)} [{Lower.ToString(format, System.Globalization.CultureInfo.InvariantCulture)}, {Upper.ToString(format, System.Globalization.CultureInfo.InvariantCulture)}]");
}
