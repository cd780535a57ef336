using System.Globalization;
using System.Text.Json;
using DiffusionCache.Evaluation;

namespace DiffusionCache.Cli.Reporting;

/// <summary>How the frontier and the paper report write figures with intervals: invariant numbers, "estimate
/// [lower, upper]" cells, a paired verdict in a few words, and their JSON settings.</summary>
internal static class StudyText
{
    internal static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    internal static string F(double x, string format) => x.ToString(format, CultureInfo.InvariantCulture);

    /// <summary>"5.21 [4.9, 5.6]" for FID; KID ×10³.</summary>
    internal static string Cell(Interval i, double scale = 1, string format = "0.00") =>
        $"{F(i.Estimate * scale, format)} [{F(i.Lower * scale, format)}, {F(i.Upper * scale, format)}]";

    /// <summary>The paired verdict in a few words.</summary>
    internal static string Verdict(QualityComparison c) => c.Verdict switch
    {
        DiffusionCache.Evaluation.Verdict.FirstBetter => "better in both spaces",
        DiffusionCache.Evaluation.Verdict.SecondBetter => "worse in both spaces",
        DiffusionCache.Evaluation.Verdict.Conflicting => "spaces conflict",
        _ => c.Differences.Any(d => d.Verdict != DiffusionCache.Evaluation.Verdict.NotDistinguishable)
            ? "not distinguishable overall (" + string.Join(", ", c.Differences.Where(d => d.Verdict != DiffusionCache.Evaluation.Verdict.NotDistinguishable)
                .Select(d => $"{d.Metric} {d.Space} {(d.Verdict == DiffusionCache.Evaluation.Verdict.FirstBetter ? "better" : "worse")}")) + ")"
            : "not distinguishable",
    };

}
