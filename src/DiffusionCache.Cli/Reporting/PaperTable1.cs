namespace DiffusionCache.Cli.Reporting;

/// <summary>
/// The Block Caching paper's Table 1 (LDM-512; FID on a COCO subset without faces, one number per row, no
/// interval; speedup over the same-steps baseline on the paper's GPU), so the report can set each of its claims
/// beside what the embedded model shows. The paper's "DPM" row is compared with our DPM-Solver++.
/// </summary>
internal static class PaperTable1
{
    /// <summary>One row of the paper's table.</summary>
    internal sealed record Row(int Steps, double Fid, double Speedup);

    /// <summary>One solver and step count: baseline, the baseline with fewer steps at about the same latency,
    /// Block Caching, and Block Caching with scale-shift.</summary>
    internal sealed record Setting(Row Baseline, Row Fewer, Row Cached, Row ScaleShift);

    /// <summary>The paper's rows for <paramref name="solver"/> with <paramref name="steps"/> steps, or null where
    /// the paper has none.</summary>
    internal static Setting? For(string solver, int steps) => (solver, steps) switch
    {
        ("dpm++", 20) => new(new(20, 17.15, 1.00), new(14, 18.67, 1.43), new(20, 17.58, 1.68), new(20, 15.95, 1.65)),
        ("ddim", 20) => new(new(20, 17.43, 1.00), new(14, 17.11, 1.43), new(20, 16.52, 1.60), new(20, 16.02, 1.58)),
        ("dpm++", 50) => new(new(50, 17.44, 1.00), new(30, 17.21, 1.67), new(50, 17.23, 1.85), new(50, 15.18, 1.82)),
        ("ddim", 50) => new(new(50, 17.76, 1.00), new(30, 17.42, 1.67), new(50, 16.65, 1.82), new(50, 15.15, 1.79)),
        _ => null,
    };
}
