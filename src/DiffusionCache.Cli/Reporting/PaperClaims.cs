using DiffusionCache.Evaluation;
using static DiffusionCache.Cli.Reporting.StudyText;

namespace DiffusionCache.Cli.Reporting;

/// <summary>
/// The Block Caching paper's claims on one setting of Table 1 (Sec. 4.2), each judged twice: on the paper's own
/// numbers (one FID per row, no interval) and on the report's rows (FID with 95 % intervals in two feature spaces,
/// and the paired bootstrap).
/// </summary>
internal static class PaperClaims
{
    /// <summary>One claim: <paramref name="First"/> is better than <paramref name="Second"/> (or, with
    /// <paramref name="AtLeastAsGood"/>, no worse), with the paper's FIDs of the same two rows.</summary>
    internal sealed record Claim(string Text, StudyResult First, StudyResult Second, double PaperFirst, double PaperSecond, bool AtLeastAsGood)
    {
        /// <summary>Whether the paper's own table supports it.</summary>
        public bool PaperHolds => AtLeastAsGood ? PaperFirst <= PaperSecond : PaperFirst < PaperSecond;

        /// <summary>The paper's two FIDs and whether they support the claim.</summary>
        public string Paper => $"{F(PaperFirst, "0.00")} vs {F(PaperSecond, "0.00")}: {(PaperHolds ? "yes" : "no")}";

        /// <summary>Our FIDs per feature space, "first vs second".</summary>
        public string Here => string.Join(" · ", First.Quality.Spaces.Select((q, i) =>
            $"{q.Space} {F(q.Fid.Estimate, "0.00")} vs {F(Second.Quality.Spaces[i].Fid.Estimate, "0.00")}"));

        /// <summary>The judgement by the FID intervals of each space (the issue's bar).</summary>
        public string ByIntervals => Judge([.. First.Quality.Spaces.Select(q => q.Fid)], [.. Second.Quality.Spaces.Select(q => q.Fid)],
            [.. First.Quality.Spaces.Select(q => q.Space)], AtLeastAsGood);

        /// <summary>The paired bootstrap's verdict (FID and KID, both spaces), from the first row's side.</summary>
        public string Paired => Verdict(SampleQuality.Compare(First.Quality, Second.Quality));
    }

    /// <summary>What the paper claims for one solver and step count: with more steps, caching beats the baseline
    /// with fewer steps at the same latency, with and without scale-shift; scale-shift improves on plain caching;
    /// the full configuration beats the same-steps baseline; caching alone keeps the same-steps baseline's quality.
    /// The same-latency claims need the fewer-steps row.</summary>
    internal static List<Claim> For(PaperTable1.Setting paper, StudyResult baseline, StudyResult? fewer, StudyResult cached, StudyResult scaleShift)
    {
        var claims = new List<Claim>();
        if (fewer is not null)
        {
            claims.Add(new($"Block Caching beats the same-latency baseline ({fewer.Point.Steps} steps here, {paper.Fewer.Steps} in the paper)",
                cached, fewer, paper.Cached.Fid, paper.Fewer.Fid, false));
            claims.Add(new("Block Caching + scale-shift beats the same-latency baseline", scaleShift, fewer, paper.ScaleShift.Fid, paper.Fewer.Fid, false));
        }
        claims.Add(new("scale-shift improves on Block Caching", scaleShift, cached, paper.ScaleShift.Fid, paper.Cached.Fid, false));
        claims.Add(new("Block Caching + scale-shift beats the same-steps baseline", scaleShift, baseline, paper.ScaleShift.Fid, paper.Baseline.Fid, false));
        claims.Add(new("Block Caching alone keeps the same-steps baseline's quality", cached, baseline, paper.Cached.Fid, paper.Baseline.Fid, true));
        return claims;
    }

    /// <summary>
    /// A claim judged by FID intervals per feature space: "better" holds only where every space's intervals lie
    /// apart in its favour, and is reversed where every space's lie apart against it; "no worse" fails where any
    /// space is worse beyond its interval.
    /// </summary>
    /// <param name="first">FID of the row claimed better, per space.</param>
    /// <param name="second">FID of the row it is compared with, per space.</param>
    /// <param name="spaces">The spaces' names.</param>
    /// <param name="atLeastAsGood">Judge "no worse" instead of "better".</param>
    internal static string Judge(IReadOnlyList<Interval> first, IReadOnlyList<Interval> second, IReadOnlyList<string> spaces, bool atLeastAsGood)
    {
        var cmp = first.Select((f, i) => FrontierLine.CompareLower(f, second[i])).ToList();
        string Where(int sign) => string.Join(" and ", spaces.Where((_, i) => cmp[i] == sign));
        if (atLeastAsGood)
            return cmp.Any(c => c > 0) ? $"no: FID higher beyond the interval in {Where(1)}"
                : cmp.All(c => c < 0) ? "yes: FID lower, intervals apart in every space" : "yes: intervals overlap" + (cmp.Any(c => c < 0) ? $" (lower in {Where(-1)})" : "");
        if (cmp.All(c => c < 0)) return "yes: FID lower, intervals apart in every space";
        if (cmp.All(c => c > 0)) return "reversed: FID higher, intervals apart in every space";
        if (cmp.Any(c => c < 0) && cmp.Any(c => c > 0)) return $"spaces disagree: lower in {Where(-1)}, higher in {Where(1)}";
        return "not shown: intervals overlap" + (cmp.Any(c => c != 0)
            ? $" in {Where(0)} (FID {(cmp.Any(c => c < 0) ? "lower" : "higher")} beyond the interval in {Where(cmp.Any(c => c < 0) ? -1 : 1)})"
            : " in every space");
    }
}
