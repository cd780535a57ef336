using System.Globalization;
using DiffusionCache.Caching.BlockCaching;

namespace DiffusionCache.Cli.Commands;

/// <summary>A Block Caching threshold as the options take it: absolute (<c>0.3</c>) or a multiple of the profile's
/// median step change (<c>8m</c>, <see cref="BlockProfile.MedianChange"/>).</summary>
/// <param name="Value">The number given.</param>
/// <param name="OfMedian">Whether it multiplies the profile's median change.</param>
internal readonly record struct Threshold(double Value, bool OfMedian)
{
    /// <summary>Parses one threshold; the message names the option and the value.</summary>
    public static Threshold Parse(string text, string option)
    {
        string t = text.Trim();
        bool ofMedian = t.EndsWith('m');
        if (!double.TryParse(ofMedian ? t[..^1] : t, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) || !(v > 0) || double.IsInfinity(v))
            throw new DiffusionCacheException($"{option} '{text}': expected a number > 0, or a multiple of the profile's median step change like 8m");
        return new Threshold(v, ofMedian);
    }

    /// <summary>Parses a comma-separated list.</summary>
    public static Threshold[] ParseList(string list, string option) =>
        [.. list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(t => Parse(t, option))];

    /// <summary>δ for <paramref name="profile"/>.</summary>
    public double Resolve(BlockProfile profile) => OfMedian ? Value * profile.MedianChange : Value;
}
