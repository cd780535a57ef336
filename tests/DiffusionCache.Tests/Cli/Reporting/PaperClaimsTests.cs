using DiffusionCache.Cli.Reporting;
using DiffusionCache.Evaluation;

namespace DiffusionCache.Tests.Cli.Reporting;

/// <summary>The report's reading of the paper's claims: on the paper's own Table 1 (one FID per row) and on ours by
/// FID intervals per feature space, where a claim holds only when every space agrees beyond its interval.</summary>
public sealed class PaperClaimsTests
{
    private static readonly string[] Spaces = ["classifier", "resnet"];

    private static Interval I(double estimate, double halfWidth) => new(estimate, estimate - halfWidth, estimate + halfWidth);

    [Fact]
    public void A_better_claim_holds_only_where_every_space_lies_apart_in_its_favour()
    {
        Assert.StartsWith("yes", PaperClaims.Judge([I(5.0, 0.1), I(3.0, 0.1)], [I(6.0, 0.1), I(4.0, 0.1)], Spaces, false));
        Assert.StartsWith("reversed", PaperClaims.Judge([I(6.0, 0.1), I(4.0, 0.1)], [I(5.0, 0.1), I(3.0, 0.1)], Spaces, false));
        Assert.Equal("not shown: intervals overlap in every space", PaperClaims.Judge([I(5.0, 0.5), I(3.0, 0.5)], [I(5.2, 0.5), I(3.1, 0.5)], Spaces, false));
        Assert.Equal("not shown: intervals overlap in resnet (FID lower beyond the interval in classifier)",
            PaperClaims.Judge([I(5.0, 0.1), I(3.0, 0.5)], [I(6.0, 0.1), I(3.1, 0.5)], Spaces, false));
        Assert.Equal("spaces disagree: lower in classifier, higher in resnet",
            PaperClaims.Judge([I(5.0, 0.1), I(4.0, 0.1)], [I(6.0, 0.1), I(3.0, 0.1)], Spaces, false));
    }

    [Fact]
    public void A_no_worse_claim_fails_where_any_space_is_worse_beyond_its_interval()
    {
        Assert.StartsWith("yes: intervals overlap", PaperClaims.Judge([I(5.1, 0.5), I(3.0, 0.5)], [I(5.0, 0.5), I(3.0, 0.5)], Spaces, true));
        Assert.Equal("no: FID higher beyond the interval in resnet", PaperClaims.Judge([I(5.0, 0.5), I(4.0, 0.1)], [I(5.0, 0.5), I(3.0, 0.1)], Spaces, true));
    }

    [Fact]
    public void The_paper_s_own_table_does_not_support_every_claim_it_makes()
    {
        // Table 1 as printed: DPM 50 with caching (17.23) does not beat the 30-step baseline (17.21), and DPM 20
        // caching alone (17.58) is worse than its baseline (17.15); scale-shift beats the baseline in all four.
        var rows = new[] { "baseline", "fewer steps", "Block Caching", "Block Caching + scale-shift" }
            .Select(m => new StudyResult(new StudyPoint(m, m, "dpm++", 50, "none", m, null, null), null!, null, 0, 0, null)).ToArray();
        foreach (var (solver, steps) in new[] { ("dpm++", 20), ("ddim", 20), ("dpm++", 50), ("ddim", 50) })
        {
            var claims = PaperClaims.For(PaperTable1.For(solver, steps)!, rows[0], rows[1], rows[2], rows[3]);
            Assert.Equal(5, claims.Count);
            Assert.True(claims.Single(c => c.Text.StartsWith("Block Caching + scale-shift beats the same-steps", StringComparison.Ordinal)).PaperHolds);
            Assert.True(claims.Single(c => c.Text.StartsWith("scale-shift improves", StringComparison.Ordinal)).PaperHolds);
            bool cachedBeatsFewer = claims[0].PaperHolds, cachedKeepsQuality = claims[^1].PaperHolds;
            Assert.Equal((solver, steps) != ("dpm++", 50), cachedBeatsFewer);
            Assert.Equal((solver, steps) != ("dpm++", 20), cachedKeepsQuality);
        }
        Assert.Null(PaperTable1.For("euler", 20));
        // Without the same-latency row, only the claims that do not need it.
        Assert.Equal(3, PaperClaims.For(PaperTable1.For("ddim", 20)!, rows[0], null, rows[2], rows[3]).Count);
    }
}
