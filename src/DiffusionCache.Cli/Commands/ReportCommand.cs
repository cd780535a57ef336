using System.CommandLine;
using System.Text;
using System.Text.Json;
using DiffusionCache.Caching.BlockCaching;
using DiffusionCache.Cli.Reporting;
using DiffusionCache.Evaluation;
using DiffusionCache.Formats;
using static DiffusionCache.Cli.Reporting.StudyText;
using static TorchSharp.torch;

namespace DiffusionCache.Cli.Commands;

/// <summary>
/// <c>diffcache report</c>: the Block Caching paper's evaluation on the embedded model — Table 1 (baseline, the
/// baseline with fewer steps at the latency caching measures, Block Caching, and Block Caching with scale-shift, for
/// DDIM and DPM-Solver++ at 20 and 50 steps), Fig. 6 (the four side by side on the same seeds, with the regions where
/// they differ most enlarged) and Fig. 7 (one sample per class across δ with the measured speedup), written to
/// <c>docs/paper/</c>. Resumable through the sample store and the saved timings.
/// </summary>
internal static class ReportCommand
{
    internal static readonly (string Solver, int Steps)[] Settings = [("ddim", 50), ("ddim", 20), ("dpm++", 50), ("dpm++", 20)];


    public static Command Create()
    {
        var quick = new Option<bool>("--quick") { Description = "200 samples per row into out/paper (minutes, for trying it); default: the published run, 2000 samples into docs/paper" };
        var samples = new Option<int?>("--samples") { Description = "samples per row (default 2000; 200 with --quick)" };
        var batch = new Option<int>("--batch") { Description = "samples per sampling batch (its index is its seed)", DefaultValueFactory = _ => 100 };
        // A shared virtual machine's speed drifts by tens of percent; ten rounds keep the median ratio steady enough that
        // the same-latency row chosen in the first timing phase still matches in the last.
        var repeats = new Option<int>("--repeats") { Description = "timed rounds of each timing phase", DefaultValueFactory = _ => 10 };
        var timingBatch = new Option<int>("--timing-batch") { Description = "images per timed generation", DefaultValueFactory = _ => 16 };
        var output = new Option<string?>("--out") { Description = "folder for README.md, table1.json and the figures (default docs/paper; out/paper with --quick)" };
        var sampleOnly = new Option<bool>("--sample-only") { Description = "generate and score the samples of every row whose step count is known, keeping both, then stop (the same-latency rows need timings, on an idle machine)" };
        var command = new Command("report", "the Block Caching paper's Table 1 and Fig. 6-7 reproduced on the embedded model")
            { quick, samples, batch, repeats, timingBatch, output, sampleOnly };
        var study = new StudySetup.Options();
        study.AddTo(command);
        var runtime = new RuntimeOptions();
        runtime.AddTo(command);
        command.SetAction((parse, cancel) => Task.FromResult(CommandRunner.Run(() =>
        {
            bool isQuick = parse.GetValue(quick);
            var s = new RunSettings(parse.GetValue(samples) ?? (isQuick ? 200 : 2000), parse.GetValue(batch), parse.GetValue(repeats),
                parse.GetValue(timingBatch), parse.GetValue(output) ?? (isQuick ? "out/paper" : "docs/paper"), parse.GetValue(sampleOnly),
                Path.Combine("runs", isQuick ? "paper-quick" : "paper"));
            if (s.Repeats < 1) throw new DiffusionCacheException("--repeats must be at least 1");
            if (s.TimingBatch < 1) throw new DiffusionCacheException("--timing-batch must be positive");
            return Execute(study, parse, runtime.Apply(parse), s, cancel);
        })));
        return command;
    }

    private sealed record RunSettings(int Samples, int Batch, int Repeats, int TimingBatch, string Out, bool SampleOnly, string State);

    private static string Baseline(string solver, int steps) => $"{Label(solver)} {steps}, baseline";
    private static string Cached(string solver, int steps) => $"{Label(solver)} {steps}, Block Caching";
    private static string ScaleShift(string solver, int steps) => $"{Label(solver)} {steps}, Block Caching + scale-shift";
    private static string Label(string solver) => solver == "dpm++" ? "DPM-Solver++" : solver.ToUpperInvariant();

    internal static IReadOnlyList<PointSpec> TableSpecs() => [.. Settings.SelectMany(x => new[]
    {
        new PointSpec(Baseline(x.Solver, x.Steps), "baseline", x.Solver, x.Steps, "none", x.Steps, null),
        new PointSpec(Cached(x.Solver, x.Steps), "Block Caching", x.Solver, x.Steps, "blockcache", null, Baseline(x.Solver, x.Steps)),
        new PointSpec(ScaleShift(x.Solver, x.Steps), "Block Caching + scale-shift", x.Solver, x.Steps, "blockcache:ss", null, Baseline(x.Solver, x.Steps)),
    })];

    /// <summary>Fig. 7's points: the frontier's Block Caching δ on DDIM 50, with its cache texts, so the samples are shared.</summary>
    internal static IReadOnlyList<PointSpec> Fig7Specs() =>
        [.. FrontierCommand.Groups(full: true).Single(g => g.Solver == "ddim" && g.Steps == 50).Points.Where(p => p.Method == "Block Caching")
            .Select(p => p with { Name = "Fig. 7 " + FrontierCommand.Short(p.Name), Reference = Baseline("ddim", 50) })];

    private static int Execute(StudySetup.Options options, ParseResult parse, Pipelines.PipelineLoadOptions load, RunSettings s, CancellationToken cancel)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var table = TableSpecs();
        var fig7 = Fig7Specs();
        foreach (var (solver, steps) in Settings)   // the one thing a fresh model lacks: say how to make it
        {
            string schedule = Path.Combine(DefaultPaths.Resolve(parse.GetValue(options.Model)!), "cache", $"schedule-{solver}-{steps}.json");
            if (!File.Exists(schedule))
                throw new DiffusionCacheException($"{schedule}: the report needs the model's Block Caching schedule and scale-shift adjustment for {solver} " +
                    $"with {steps} steps ('diffcache profile', 'diffcache schedule', 'diffcache train scaleshift --solver {solver} --denoising-steps {steps}')");
        }
        using var setup = StudySetup.Open(options, parse, load, s.Samples, s.Batch, [.. table, .. fig7]);
        AtomicFile.EnsureWritable(Path.Combine(s.Out, "README.md"));
        var tablePoints = setup.Points.Take(table.Count).ToList();
        var fig7Points = setup.Points.Skip(table.Count).ToList();
        Directory.CreateDirectory(s.State);
        // Every invocation on this store adds its time, interrupted ones too, so the report states what it cost in all.
        string ledger = Path.Combine(s.State, "run-time.json");
        try
        {
            return Report(setup, s, tablePoints, fig7Points, ledger, clock, cancel);
        }
        finally
        {
            RunTimeLedger.Add(ledger, clock.Elapsed);
        }
    }

    private static int Report(StudySetup setup, RunSettings s, List<StudyPoint> tablePoints, List<StudyPoint> fig7Points, string ledger,
        System.Diagnostics.Stopwatch clock, CancellationToken cancel)
    {

        // Which fewer-steps baseline runs as fast as Block Caching: the step count its measured speedup implies.
        var matched = new List<StudyPoint>();
        var chosenFrom = new Dictionary<(string Solver, int Steps), Interval>();
        if (!s.SampleOnly)
        {
            var pre = tablePoints.Where(p => p.Method != "Block Caching + scale-shift").Select(p => new StudyResult(p, null!, null, 0, 0, null)).ToList();
            var timed = setup.Time(pre, s.TimingBatch, s.Repeats, Path.Combine(s.State, $"latency-batch{s.TimingBatch}.json"), cancel);
            foreach (var (solver, steps) in Settings)
            {
                var measured = timed.First(r => r.Point.Name == Cached(solver, steps)).Timing!.Speedup;
                chosenFrom[(solver, steps)] = measured;
                double speedup = measured.Estimate;
                int fewer = Math.Clamp((int)Math.Round(steps / speedup), 1, steps);
                matched.Add(new StudyPoint($"{Label(solver)} {steps}, baseline with {fewer} steps (same latency)", "fewer steps", solver, fewer, "none",
                    "no cache", null, Baseline(solver, steps)) { Knob = fewer });
            }
        }
        using var fig7Study = new Study
        {
            Pipeline = setup.Pipeline, Model = setup.Study.Model, Classifier = setup.Study.Classifier, Spaces = setup.Study.Spaces,
            References = setup.Study.References, Store = setup.Study.Store, Samples = setup.Pipeline.NumLabels, Batch = s.Batch, Guidance = setup.Study.Guidance,
        };
        if (s.SampleOnly)
        {
            setup.SampleAndScore(RowOrder(tablePoints, matched), cancel);
            foreach (var p in fig7Points) fig7Study.Images(p, null, cancel);
            Console.WriteLine($"samples and scores are in {setup.Study.Store.Folder}; run again without --sample-only on an idle machine for the same-latency rows, the timings and the report");
            return 0;
        }
        var rows = setup.Measure(RowOrder(tablePoints, matched), cancel);
        Console.WriteLine($"Table 1: {rows.Count} rows x {s.Samples} samples scored ({clock.Elapsed.TotalMinutes:0} min)");
        foreach (var p in fig7Points) fig7Study.Images(p, null, cancel);

        var all = setup.Time([.. rows, .. fig7Points.Select(p => new StudyResult(p, null!, null, 0, 0, null))], s.TimingBatch, s.Repeats,
            Path.Combine(s.State, $"timing-batch{s.TimingBatch}.json"), cancel);
        rows = all.Take(rows.Count).ToList();
        var fig7Timed = all.Skip(rows.Count).ToList();
        foreach (var share in all.Select(r => r.Timing!.CpuShare).Distinct().Where(x => x < 0.9))
            Console.WriteLine($"warning: timings were taken with {share:P0} of the CPU (other work was running); delete {s.State}/*.json and rerun on an idle machine");

        Directory.CreateDirectory(s.Out);
        var md = new StringBuilder();
        md.AppendLine("# The Block Caching paper's evaluation on the embedded model");
        md.AppendLine();
        md.AppendLine($"`./diffcache report{(s.Samples == 2000 ? "" : $" --samples {s.Samples}")}` — {s.Samples} samples per row, the same seeds and labels in every row " +
            $"(batch b of {s.Batch} seeded with b, sample i asks for class i mod 10), guidance 4. FID and KID (×10³) against the Fashion-MNIST test split " +
            "in two independent feature spaces (`classifier`, the metric network; `resnet`, a ResNet of another architecture trained from another seed) " +
            "with 95 % bootstrap intervals (200 resamples); class accuracy with its Wilson interval; images/s and speedup measured side by side in this run " +
            $"({s.Repeats} rounds, {s.TimingBatch} images per run, within-round ratios to the row's baseline). The same-latency baseline runs the step count " +
            "that Block Caching's measured speedup implies (steps / speedup, rounded); its own measured speedup is in its row.");
        var groups = Settings.Select(x => (x.Solver, x.Steps, Rows: rows.Where(r => r.Point.Solver == x.Solver
            && r.Point.Name.StartsWith($"{Label(x.Solver)} {x.Steps},", StringComparison.Ordinal)).ToList())).ToList();
        var claims = groups.Select(g => (g.Solver, g.Steps, Claims: Claims(g.Solver, g.Steps, g.Rows))).ToList();
        md.AppendLine();
        md.AppendLine("## The paper's claims, in its Table 1 and here");
        md.AppendLine();
        md.AppendLine("The paper's column reads its own Table 1 (LDM-512, FID on a COCO subset, one number per row, no interval); " +
            "ours judges each claim by FID with 95 % intervals in both feature spaces (a claim holds only where every space's " +
            "intervals lie apart) and by the paired bootstrap over FID and KID in both spaces, from the first row's side.");
        md.AppendLine();
        md.AppendLine("| setting | claim | paper: FID, holds? | here: FID | here: by intervals | here: paired |");
        md.AppendLine("|---|---|---|---|---|---|");
        foreach (var (solver, steps, list) in claims)
            foreach (var c in list)
                md.AppendLine($"| {Label(solver)} {steps} | {c.Text} | {c.Paper} | {c.Here} | {c.ByIntervals} | {c.Paired} |");
        var jsonGroups = new List<object>();
        foreach (var ((solver, steps, group), (_, _, list)) in groups.Zip(claims))
        {
            md.AppendLine();
            md.AppendLine($"## Table 1: {Label(solver)}, {steps} steps");
            md.AppendLine();
            md.Append(Table(group));
            var paper = PaperTable1.For(solver, steps)!;
            md.AppendLine();
            md.AppendLine($"The paper's rows (LDM-512): baseline {F(paper.Baseline.Fid, "0.00")}, {paper.Fewer.Steps} steps {F(paper.Fewer.Fid, "0.00")} " +
                $"({F(paper.Fewer.Speedup, "0.00")}x), Block Caching {F(paper.Cached.Fid, "0.00")} ({F(paper.Cached.Speedup, "0.00")}x), " +
                $"+ scale-shift {F(paper.ScaleShift.Fid, "0.00")} ({F(paper.ScaleShift.Speedup, "0.00")}x).");
            var fewerRow = group.Single(r => r.Point.Method == "fewer steps");
            var cachedRow = group.Single(r => r.Point.Name == Cached(solver, steps));
            md.AppendLine();
            md.AppendLine(SameLatency(steps, chosenFrom[(solver, steps)], fewerRow.Point.Steps, fewerRow.Timing!.Speedup, cachedRow.Timing!.Speedup));
            var verdicts = list.Select(c => $"{c.Text}: {SampleQuality.Compare(c.First.Quality, c.Second.Quality).Describe(Short(c.First), Short(c.Second))}").ToList();
            md.AppendLine();
            // The bullets judge the paired differences, which can lie apart where the table's own intervals overlap.
            md.AppendLine("Paired bootstrap (same seeds, same resamples; the intervals are those of the difference between the two rows):");
            md.AppendLine();
            foreach (var v in verdicts) md.AppendLine($"- {v}");
            string fig6 = $"fig6-{solver.Replace("++", "pp")}-{steps}.png";
            Fig6(setup.Study, group, Path.Combine(s.Out, fig6), $"{Label(solver)} {steps}: the four rows of Table 1 on the same seeds; below, the 16x16 region where they differ most, enlarged");
            md.AppendLine();
            md.AppendLine($"Fig. 6 ({Label(solver)} {steps}): ![Fig. 6]({fig6})");
            foreach (var c in list) Console.WriteLine($"{Label(solver)} {steps}: {c.Text}: paper {c.Paper}; here {c.ByIntervals}; paired {c.Paired}");
            jsonGroups.Add(new
            {
                solver, steps, rows = group.Select(Json), verdicts,
                same_latency = new { steps = fewerRow.Point.Steps, chosen_from_block_caching_speedup = chosenFrom[(solver, steps)] },
                paper = new { baseline = paper.Baseline, fewer_steps = paper.Fewer, block_caching = paper.Cached, scale_shift = paper.ScaleShift },
                claims = list.Select(c => new
                {
                    claim = c.Text, first = c.First.Point.Name, second = c.Second.Point.Name, paper_first = c.PaperFirst, paper_second = c.PaperSecond,
                    paper_holds = c.PaperHolds, by_intervals = c.ByIntervals, paired = c.Paired,
                }),
            });
        }
        Fig7(fig7Study, fig7Points, fig7Timed, rows.First(r => r.Point.Name == Baseline("ddim", 50)), Path.Combine(s.Out, "fig7-ddim-50.png"));
        md.AppendLine();
        md.AppendLine("## Fig. 7: δ trades speed for quality");
        md.AppendLine();
        md.AppendLine("One sample per class (rows) on DDIM 50 as δ grows (columns), with the speedup measured in this run under each δ: ![Fig. 7](fig7-ddim-50.png)");
        md.AppendLine();
        md.AppendLine("The whole speed–quality curve over δ, with FID and KID at 1000 samples, is on the frontier (`docs/benchmarks/frontier.md`).");
        md.AppendLine();
        md.AppendLine("## Fig. 2b and Fig. 4: change profiles and schedules");
        md.AppendLine();
        foreach (var (solver, steps) in Settings)
        {
            string cache = $"../../models/fashion-ldm/cache";
            md.AppendLine($"- {Label(solver)} {steps}: [profile (Fig. 2b)]({cache}/profile-{solver}-{steps}.png), [schedule (Fig. 4)]({cache}/schedule-{solver}-{steps}.png)");
        }
        md.AppendLine();
        var before = RunTimeLedger.Read(ledger);
        int invocations = before.Invocations + 1;
        md.AppendLine($"Run time: {before.Minutes + clock.Elapsed.TotalMinutes:0} min over {invocations} invocation{(invocations == 1 ? "" : "s")} of this " +
            $"command with its state in {s.State} (interrupted ones included), this one {clock.Elapsed.TotalMinutes:0} min.");
        AtomicFile.WriteAllText(Path.Combine(s.Out, "README.md"), md.ToString());
        AtomicFile.WriteAllText(Path.Combine(s.Out, "table1.json"), JsonSerializer.Serialize(new
        {
            samples = s.Samples, batch = s.Batch, repeats = s.Repeats, timing_batch = s.TimingBatch, groups = jsonGroups,
            fig7 = fig7Timed.Select(r => new { delta = r.Point.Knob, cache_name = r.Point.CacheName, speedup = r.Timing!.Speedup }),
        }, JsonOptions));
        Console.WriteLine($"wrote {s.Out}/README.md, table1.json, fig6-*.png and fig7-ddim-50.png ({clock.Elapsed.TotalMinutes:0} min)");
        return 0;
    }

    /// <summary>How the same-latency row's step count was chosen, and whether the final timing still puts it at Block
    /// Caching's speed: the two phases are minutes apart, and a drifting machine can move the ratios between them.</summary>
    internal static string SameLatency(int steps, Interval chosenFrom, int fewer, Interval fewerFinal, Interval cachedFinal)
    {
        string text = $"Same latency: {steps} steps / {F(chosenFrom.Estimate, "0.00")}x (Block Caching's speedup in the first timing phase, " +
            $"range {F(chosenFrom.Lower, "0.00")}–{F(chosenFrom.Upper, "0.00")}) ≈ {fewer} steps; in the final timing the {fewer}-step row ran " +
            $"{F(fewerFinal.Estimate, "0.00")}x and Block Caching {F(cachedFinal.Estimate, "0.00")}x";
        bool apart = fewerFinal.Estimate < cachedFinal.Lower || fewerFinal.Estimate > cachedFinal.Upper;
        return text + (apart
            ? $" — outside Block Caching's range of rounds ({F(cachedFinal.Lower, "0.00")}–{F(cachedFinal.Upper, "0.00")}): the machine's speed moved " +
              $"between the phases, so read this row as {(fewerFinal.Estimate > cachedFinal.Estimate ? "faster" : "slower")} than Block Caching, not at its latency."
            : ", within Block Caching's range of rounds.");
    }

    /// <summary>Baseline, same-latency baseline, Block Caching, + scale-shift: the order of the paper's rows.</summary>
    private static List<StudyPoint> RowOrder(IReadOnlyList<StudyPoint> table, IReadOnlyList<StudyPoint> matched) =>
        [.. Settings.SelectMany(x =>
        {
            string prefix = $"{Label(x.Solver)} {x.Steps},";
            var mine = table.Where(p => p.Name.StartsWith(prefix, StringComparison.Ordinal)).ToList();
            return mine.Take(1).Concat(matched.Where(p => p.Name.StartsWith(prefix, StringComparison.Ordinal))).Concat(mine.Skip(1));
        })];

    private static string Table(IReadOnlyList<StudyResult> rows)
    {
        var spaces = rows[0].Quality.Spaces.Select(x => x.Space).ToList();
        var sb = new StringBuilder();
        sb.Append("| configuration | steps |");
        foreach (var x in spaces) sb.Append($" FID {x} | KID {x} |");
        sb.AppendLine(" class accuracy | images/s | speedup (range) |");
        sb.Append("|---|---:|");
        foreach (var _ in spaces) sb.Append("---:|---:|");
        sb.AppendLine("---:|---:|---:|");
        foreach (var r in rows)
        {
            var t = r.Timing!;
            sb.Append($"| {Short(r)} | {r.Point.Steps} |");
            foreach (var q in r.Quality.Spaces) sb.Append($" {Cell(q.Fid)} | {Cell(q.Kid, 1000)} |");
            var acc = r.Quality.ClassAccuracy;
            sb.AppendLine($" {F(acc.Estimate * 100, "0.0")} % [{F(acc.Lower * 100, "0.0")}, {F(acc.Upper * 100, "0.0")}] | {F(1000 / t.MsPerImage, "0.0")} | " +
                $"{F(t.Speedup.Estimate, "0.00")}x ({F(t.Speedup.Lower, "0.00")}–{F(t.Speedup.Upper, "0.00")}) |");
        }
        return sb.ToString();
    }

    /// <summary>The paper's claims on one setting (<see cref="PaperClaims.For"/>), from the table's rows.</summary>
    private static List<PaperClaims.Claim> Claims(string solver, int steps, IReadOnlyList<StudyResult> group) =>
        PaperClaims.For(PaperTable1.For(solver, steps)!, group.First(r => r.Point.Method == "baseline"), group.FirstOrDefault(r => r.Point.Method == "fewer steps"),
            group.First(r => r.Point.Method == "Block Caching"), group.First(r => r.Point.Method == "Block Caching + scale-shift"));

    private static string Short(StudyResult r) => r.Point.Name[(r.Point.Name.IndexOf(',') + 2)..];

    private static object Json(StudyResult r) => new
    {
        name = r.Point.Name, method = r.Point.Method, solver = r.Point.Solver, steps = r.Point.Steps, cache = r.Point.Cache, cache_name = r.Point.CacheName,
        quality = r.Quality, images_per_second = 1000 / r.Timing!.MsPerImage, speedup = r.Timing.Speedup, reused_fraction = r.Timing.ReusedFraction,
        psnr = double.IsInfinity(r.Psnr) ? (double?)null : r.Psnr, ssim = r.Ssim,
    };

    /// <summary>Fig. 6: the rows' first sample of each class side by side, then for each column the 16x16 window
    /// where any row differs most from the baseline, enlarged 2x.</summary>
    private static void Fig6(Study study, IReadOnlyList<StudyResult> group, string path, string title)
    {
        using var scope = NewDisposeScope();
        int classes = study.Pipeline.NumLabels;
        var images = group.Select(r => study.Images(r.Point).narrow(0, 0, classes)).ToList();
        var baseline = images[0];
        // Per column, the window where the rows disagree with the baseline most (summed absolute difference).
        var difference = stack(images.Skip(1).Select(x => (x - baseline).abs()).ToList()).amax(0);   // [C, 1, 32, 32]
        var window = nn.functional.avg_pool2d(difference, 16, 1);   // [C, 1, 17, 17]
        var crops = new List<Tensor>();
        var corners = Enumerable.Range(0, classes).Select(c =>
        {
            long flat = window[c, 0].argmax().item<long>();
            return (Top: flat / window.shape[3], Left: flat % window.shape[3]);
        }).ToList();
        foreach (var x in images)
            for (int c = 0; c < classes; c++)
                crops.Add(nn.functional.interpolate(x[c].narrow(1, corners[c].Top, 16).narrow(2, corners[c].Left, 16).unsqueeze(0),
                    [32, 32], mode: InterpolationMode.Nearest).squeeze(0));
        var grid = cat([.. images, stack(crops)]);
        var labels = group.Select(Short).ToList();
        ImageGrid.Write(path, grid, 2 * group.Count, classes, [.. labels.Select(Shorten), .. labels.Select(l => "crop: " + Shorten(l))],
            [.. Enumerable.Range(0, classes).Select(c => $"class {c}")], scale: 3, title: title);
    }

    private static string Shorten(string label) => label.Replace("Block Caching", "BC").Replace("baseline with ", "").Replace(" (same latency)", " (same lat.)");

    /// <summary>Fig. 7: rows = classes, columns = uncached then increasing δ, each headed with its measured speedup.</summary>
    private static void Fig7(Study study, IReadOnlyList<StudyPoint> points, IReadOnlyList<StudyResult> timed, StudyResult baseline, string path)
    {
        using var scope = NewDisposeScope();
        int classes = study.Pipeline.NumLabels;
        var columns = new List<Tensor> { study.Images(baseline.Point) };
        columns.AddRange(points.Select(p => study.Images(p)));
        // [columns, classes, ...] -> row-major grid of classes x columns.
        var grid = stack(columns.Select(c => c.narrow(0, 0, classes)).ToList()).transpose(0, 1).reshape(-1, 1, 32, 32);
        var headers = new List<string> { "uncached" };
        headers.AddRange(timed.Select(r => $"δ={r.Point.Knob:G3} {F(r.Timing!.Speedup.Estimate, "0.00")}x"));
        ImageGrid.Write(path, grid, classes, columns.Count, [.. Enumerable.Range(0, classes).Select(c => $"class {c}")], headers, scale: 4,
            title: "DDIM 50, Block Caching: one sample per class as δ grows (measured speedup under each δ)");
    }
}
