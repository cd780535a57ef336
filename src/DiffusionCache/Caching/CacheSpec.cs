using System.Globalization;
using DiffusionCache.Caching.Adaptive;
using DiffusionCache.Caching.BlockCaching;
using DiffusionCache.Caching.Forecasting;

namespace DiffusionCache.Caching;

/// <summary>The caching methods a spec string can name.</summary>
public enum CacheMethod
{
    /// <summary>No caching.</summary>
    None,
    /// <summary>Block Caching with a schedule: the model's shipped one, or a schedule file.</summary>
    BlockCache,
    /// <summary>Block Caching deciding per block at run time (<see cref="OnlineBlockCachePolicy"/>).</summary>
    BlockCacheOnline,
    /// <summary>DeepCache, uniform or non-uniform 1:N.</summary>
    DeepCache,
    /// <summary>Step-level adaptive reuse (<see cref="StepCachePolicy"/>).</summary>
    UCache,
}

/// <summary>
/// One cache choice as people write it on a command line, parsed and validated before any work — the one grammar of
/// every <c>--cache</c> option (see <see cref="Help"/>). Pure: files named here are checked by whoever loads them.
/// </summary>
public sealed record CacheSpec
{
    /// <summary>The grammar, for help texts.</summary>
    public const string Help =
        "none | blockcache[:ss] | blockcache:DELTA | SCHEDULE.json[:ss[=ADJUSTMENT.safetensors]] | blockcache-online:THR[:WARMUP][:transformer2d|resnet2d] | " +
        "deepcache[:N[:BRANCH[:CENTER:POW]]] | ucache:THR[:START:END][:decay=D][:relative=0|1][:reset=0|1][:probe=input|first-block]; " +
        "any but none takes a last :taylor1 or :taylor2 to forecast reused values instead of reusing them";

    /// <summary>The method.</summary>
    public CacheMethod Method { get; init; }
    /// <summary>The text as given, for messages.</summary>
    public required string Text { get; init; }
    /// <summary>0 (reuse) or 1, 2 (forecast, <see cref="TaylorForecast"/>).</summary>
    public int ForecastOrder { get; init; }
    /// <summary>Block Caching: the schedule file, or null for the model's shipped schedule.</summary>
    public string? ScheduleFile { get; init; }
    /// <summary>Block Caching: with a scale-shift adjustment — the shipped one (<c>blockcache:ss</c>), the one trained
    /// beside a schedule file (<c>SCHEDULE.json:ss</c>) or <see cref="AdjustmentFile"/>.</summary>
    public bool ScaleShift { get; init; }
    /// <summary>Block Caching with a schedule file: the adjustment file named with <c>:ss=FILE</c>; null otherwise.</summary>
    public string? AdjustmentFile { get; init; }
    /// <summary>Block Caching: a threshold δ (eq. 7) to build the schedule from the model's shipped profile with
    /// (<c>blockcache:0.161</c>) instead of taking the shipped schedule; null otherwise.</summary>
    public double? Delta { get; init; }
    /// <summary>DeepCache: N (full step every N), the cache branch, and the non-uniform center and power when given.</summary>
    public (int Interval, int Branch, int? Center, double? Power) DeepCache { get; init; }
    /// <summary>Online Block Caching's knobs.</summary>
    public OnlineBlockCacheOptions? Online { get; init; }
    /// <summary>ucache's knobs.</summary>
    public StepCacheOptions? UCache { get; init; }

    /// <summary>Parses and validates <paramref name="text"/>; a bad value is a <see cref="DiffusionCacheException"/>
    /// naming it. A text that is none of the method names is taken as a schedule file.</summary>
    /// <param name="text">E.g. <c>ucache:0.2:0.15:0.95</c>, <c>blockcache-online:0.3:taylor1</c>, <c>deepcache:3</c>.</param>
    public static CacheSpec Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var parts = text.Split(':').ToList();
        int order = 0;
        if (parts.Count > 1 && parts[^1].StartsWith("taylor", StringComparison.Ordinal))
        {
            string o = parts[^1]["taylor".Length..];
            if (!int.TryParse(o, NumberStyles.None, CultureInfo.InvariantCulture, out order) || order is < 1 or > TaylorForecast.MaxOrder)
                throw new DiffusionCacheException($"--cache '{text}': '{parts[^1]}' is not a forecasting order this tool offers (taylor1 or taylor2)");
            parts.RemoveAt(parts.Count - 1);
        }
        var args = parts.Skip(1).ToArray();
        return parts[0] switch
        {
            "none" when args.Length == 0 && order == 0 => new CacheSpec { Method = CacheMethod.None, Text = text },
            "none" => throw Bad(text, "none takes no arguments"),
            "blockcache" when args is [] or ["ss"] => new CacheSpec { Method = CacheMethod.BlockCache, Text = text, ScaleShift = args is ["ss"], ForecastOrder = order },
            "blockcache" when args is [string d] && double.TryParse(d, NumberStyles.Float, CultureInfo.InvariantCulture, out _) =>
                new CacheSpec { Method = CacheMethod.BlockCache, Text = text, Delta = Number(text, d, "δ"), ForecastOrder = order },
            "blockcache" when args is [_, "ss"] => throw Bad(text, "scale-shift adjustments are trained for one schedule: blockcache:ss uses the shipped one; " +
                "for another δ write the schedule with 'diffcache schedule' and train with 'diffcache train scaleshift --schedule'"),
            "blockcache" => throw Bad(text, "expected blockcache, blockcache:ss or blockcache:DELTA (a number > 0)"),
            "blockcache-online" => OnlineSpec(text, args, order),
            "deepcache" => DeepCacheSpec(text, args, order),
            "ucache" => UCacheSpec(text, args, order),
            // SCHEDULE.json:ss uses the adjustment 'train scaleshift --schedule' wrote beside it; :ss=FILE names one.
            _ when parts.Count == 2 && (parts[1] == "ss" || parts[1].StartsWith("ss=", StringComparison.Ordinal)) => new CacheSpec
            {
                Method = CacheMethod.BlockCache, Text = text, ScheduleFile = parts[0], ScaleShift = true, ForecastOrder = order,
                AdjustmentFile = parts[1].Length > 3 ? parts[1][3..] : parts[1] == "ss" ? null : throw Bad(text, "ss= needs an adjustment file"),
            },
            _ when parts.Count == 1 || order > 0 => new CacheSpec { Method = CacheMethod.BlockCache, Text = text, ScheduleFile = string.Join(':', parts), ForecastOrder = order },
            _ => throw Bad(text, $"unknown method '{parts[0]}'"),
        };
    }

    private static CacheSpec OnlineSpec(string text, string[] args, int order)
    {
        if (args.Length is 0 or > 3) throw Bad(text, "expected blockcache-online:THR[:WARMUP][:transformer2d|resnet2d]");
        double threshold = Number(text, args[0], "threshold");
        int warmup = 1;
        BlockCachingTargets? targets = null;
        foreach (var a in args.Skip(1))
        {
            if (BlockCachingTargets.All.FirstOrDefault(t => t.Name == a) is { } t) targets = t;
            else if (int.TryParse(a, NumberStyles.Integer, CultureInfo.InvariantCulture, out int w)) warmup = w;
            else throw Bad(text, $"'{a}' is neither a warm-up call count nor transformer2d/resnet2d");
        }
        var options = new OnlineBlockCacheOptions(threshold, warmup, targets, order);
        options.Validate();
        return new CacheSpec { Method = CacheMethod.BlockCacheOnline, Text = text, Online = options, ForecastOrder = order };
    }

    private static CacheSpec DeepCacheSpec(string text, string[] args, int order)
    {
        const string usage = "expected deepcache, deepcache:N, deepcache:N:BRANCH or deepcache:N:BRANCH:CENTER:POW";
        if (args.Length is 3 or > 4) throw Bad(text, usage);
        int Integer(int i, int fallback, string what) => i >= args.Length ? fallback
            : int.TryParse(args[i], NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) ? v : throw Bad(text, $"{what} '{args[i]}' is not an integer; {usage}");
        var dc = (Integer(0, 3, "N"), Integer(1, 0, "branch"), args.Length == 4 ? Integer(2, 0, "center") : (int?)null,
            args.Length == 4 ? Number(text, args[3], "power", positive: false) : (double?)null);
        return new CacheSpec { Method = CacheMethod.DeepCache, Text = text, DeepCache = dc, ForecastOrder = order };
    }

    private static CacheSpec UCacheSpec(string text, string[] args, int order)
    {
        if (args.Length == 0) throw Bad(text, "expected ucache:THR[:START:END][:key=value...]");
        var positional = args.TakeWhile(a => !a.Contains('=')).ToArray();
        if (positional.Length is not (1 or 3)) throw Bad(text, "expected ucache:THR or ucache:THR:START:END before key=value options");
        var options = new StepCacheOptions(Number(text, positional[0], "threshold"), ForecastOrder: order);
        if (positional.Length == 3)
            options = options with { Start = Number(text, positional[1], "start", positive: false), End = Number(text, positional[2], "end", positive: false) };
        foreach (var a in args.Skip(positional.Length))
        {
            var kv = a.Split('=', 2);
            if (kv.Length != 2) throw Bad(text, $"'{a}' is not key=value (options come after THR[:START:END])");
            options = kv[0] switch
            {
                "decay" => options with { Decay = Number(text, kv[1], "decay", positive: false) },
                "relative" => options with { Relative = Flag(text, kv) },
                "reset" => options with { Reset = Flag(text, kv) },
                "start" => options with { Start = Number(text, kv[1], "start", positive: false) },
                "end" => options with { End = Number(text, kv[1], "end", positive: false) },
                "probe" => options with
                {
                    Probe = kv[1] switch
                    {
                        "input" => StepProbe.Input,
                        "first-block" => StepProbe.FirstBlock,
                        _ => throw Bad(text, $"probe '{kv[1]}': expected input or first-block"),
                    },
                },
                _ => throw Bad(text, $"unknown ucache option '{kv[0]}' (decay, relative, reset, start, end, probe)"),
            };
        }
        options.Validate();
        return new CacheSpec { Method = CacheMethod.UCache, Text = text, UCache = options, ForecastOrder = order };
    }

    private static bool Flag(string text, string[] kv) => kv[1] switch
    {
        "1" or "true" => true,
        "0" or "false" => false,
        _ => throw Bad(text, $"{kv[0]}={kv[1]}: expected 0 or 1"),
    };

    private static double Number(string text, string value, string what, bool positive = true)
    {
        if (!double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) || !double.IsFinite(v))
            throw Bad(text, $"{what} '{value}' is not a finite number");
        if (positive && !(v > 0)) throw Bad(text, $"{what} must be > 0, got {value}");
        return v;
    }

    private static DiffusionCacheException Bad(string text, string why) => new($"--cache '{text}': {why}");
}
