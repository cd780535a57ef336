using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using DiffusionCache.Caching;
using DiffusionCache.Cli.Reporting;
using static DiffusionCache.Cli.Reporting.StudyText;
using DiffusionCache.Evaluation;
using DiffusionCache.Formats;
using Spectre.Console;

namespace DiffusionCache.Cli.Commands;

/// <summary>
/// <c>diffcache frontier</c>: every caching method's knob swept on the embedded model and placed on one
/// speed–quality plane — measured speedup (side by side, within-round ratios) against FID and KID in two independent
/// feature spaces, class accuracy and PSNR/SSIM to uncached sampling, all on the same seeds — with the fewer-steps
/// baseline and uncached FID as references. Resumable: samples are kept batch by batch and timings once measured.
/// </summary>
internal static class FrontierCommand
{
    /// <summary>The lines of the plane; the first is the reference every caching method must beat.</summary>
    internal static readonly string[] Methods =
    [
        "fewer steps", "DeepCache", "Block Caching", "Block Caching + scale-shift",
        "ucache", "online Block Caching", "DeepCache + Taylor-1", "Block Caching + Taylor-1", "ucache + Taylor-1", "online Block Caching + Taylor-1",
    ];

    /// <summary>The methods this project adds beyond the two papers (what the frontier's first bar is about).</summary>
    internal static readonly string[] NewMethods = ["ucache", "online Block Caching", "DeepCache + Taylor-1", "Block Caching + Taylor-1", "ucache + Taylor-1", "online Block Caching + Taylor-1"];

    public static Command Create()
    {
        var full = new Option<bool>("--full") { Description = "the published sweep: DDIM 50 and 20, 1000 samples per point, written to docs/benchmarks (hours on 2 cores, resumable); default: a quick DDIM-20 sweep of 200 samples (minutes)" };
        var samples = new Option<int?>("--samples") { Description = "samples per point (default 200; 1000 with --full)" };
        var batch = new Option<int>("--batch") { Description = "samples per sampling batch (its index is its seed)", DefaultValueFactory = _ => 100 };
        var repeats = new Option<int?>("--repeats") { Description = "timed rounds (default 3; 5 with --full)" };
        var timingBatch = new Option<int>("--timing-batch") { Description = "images per timed generation", DefaultValueFactory = _ => 16 };
        var output = new Option<string?>("--out") { Description = "folder for frontier-*.md/.json/.png (default out/frontier; docs/benchmarks with --full)" };
        var sampleOnly = new Option<bool>("--sample-only") { Description = "generate and score the samples, keeping both, then stop (neither needs an idle machine; the timings that follow do)" };
        var sweep = new Option<string?>("--sweep") { Description = "only this sweep of --full: ddim20 or ddim50 (default both)" };
        var shard = ShardOption.Create();
        shard.Description = "with --sample-only: sample only every N-th point starting at I (several processes or nodes filling one store)";
        var command = new Command("frontier", "sweep every caching method on one speed-quality plane (FID/KID in two feature spaces vs measured speedup)")
            { full, samples, batch, repeats, timingBatch, output, sampleOnly, shard, sweep };
        var study = new StudySetup.Options();
        study.AddTo(command);
        var runtime = new RuntimeOptions();
        runtime.AddTo(command);
        command.SetAction((parse, cancel) => Task.FromResult(CommandRunner.Run(() =>
        {
            bool isFull = parse.GetValue(full);
            var settings = new Settings(isFull, parse.GetValue(samples) ?? (isFull ? 1000 : 200), parse.GetValue(batch),
                parse.GetValue(repeats) ?? (isFull ? 5 : 3), parse.GetValue(timingBatch), parse.GetValue(output) ?? (isFull ? "docs/benchmarks" : "out/frontier"), parse.GetValue(sampleOnly),
                ShardOption.Parse(parse.GetValue(shard)), parse.GetValue(sweep));
            if (settings.Shard is not null && !settings.SampleOnly) throw new DiffusionCacheException("--shard shares out the sampling: give --sample-only too (timings run in one process)");
            if (settings.Repeats < 1) throw new DiffusionCacheException("--repeats must be at least 1");
            if (settings.TimingBatch < 1) throw new DiffusionCacheException("--timing-batch must be positive");
            return Execute(study, parse, runtime.Apply(parse), settings, cancel);
        })));
        return command;
    }

    private sealed record Settings(bool Full, int Samples, int Batch, int Repeats, int TimingBatch, string Out, bool SampleOnly, Sharding.Shard? Shard,
        string? Sweep);

    /// <summary>One solver and reference step count of the sweep, with its bar speedup (issue #13's bars).</summary>
    internal sealed record Group(string Solver, int Steps, double BarSpeedup, IReadOnlyList<PointSpec> Points)
    {
        public string Id => $"{Solver}{Steps}";
        public string Title => $"{Solver.ToUpperInvariant()} {Steps}";
    }

    // Thresholds of the adaptive policies chosen from their reuse on 10 samples (ucache reuses 0 % of steps at 0.02
    // and 46 % at 0.05 on DDIM 50, saturating at 80 % — its 15-95 % window; online Block Caching 46-95 % over 0.05-0.8).
    internal static IReadOnlyList<Group> Groups(bool full) => full
        ? [Sweep("ddim", 20, 1.5, fewer: [15, 12, 10, 8], intervals: [2, 3, 4], deltas: [0.09, 0.18, 0.36, 0.72], shippedDelta: 0.18,
              ucache: [0.07, 0.1, 0.2, 0.4], online: [0.1, 0.2, 0.4, 0.8],
              taylor: new(Intervals: [3], Deltas: [0.36], UCache: [0.2], Online: [0.4])),   // DDIM 20 first: the cheaper sweep is complete sooner
           // DDIM 50 is sized to its 2x bar (~2 h of sampling on 2 cores): no knob below ~1.2x, Taylor-1 where reuse is longest.
           Sweep("ddim", 50, 2.0, fewer: [35, 25, 20, 15, 10], intervals: [2, 3, 4, 5, 8], deltas: [0.0804, 0.161, 0.322, 0.643, 1.29], shippedDelta: 0.322,   // the shipped schedules' δ, rounded (0.3217 and 0.1802)
              ucache: [0.04, 0.05, 0.1, 0.2], online: [0.1, 0.2, 0.4, 0.8],
              taylor: new(Intervals: [5], Deltas: [0.322], UCache: [0.1], Online: [0.4]))]
        : [Sweep("ddim", 20, 1.5, fewer: [14, 10], intervals: [2, 3], deltas: [0.18, 0.72], shippedDelta: null,
              ucache: [0.1, 0.3], online: [0.1, 0.4], taylor: new(Intervals: [3], Deltas: [], UCache: [], Online: []))];

    /// <summary>Which knob values of each method are also run with first-order forecasting.</summary>
    private sealed record TaylorPoints(int[] Intervals, double[] Deltas, double[] UCache, double[] Online);

    private static Group Sweep(string solver, int steps, double bar, int[] fewer, int[] intervals, double[] deltas, double? shippedDelta,
        double[] ucache, double[] online, TaylorPoints taylor)
    {
        string reference = $"no cache, {steps} steps";
        string Num(double x) => x.ToString("G4", CultureInfo.InvariantCulture);
        // Names carry the sweep ("DDIM 50 · DeepCache N=3"): the two sweeps share one study, whose names are unique.
        string group = $"{solver.ToUpperInvariant()} {steps} · ";
        reference = group + reference;
        PointSpec P(string name, string method, int s, string cache, double knob) => new(group + name, method, solver, s, cache, knob, reference);
        var points = new List<PointSpec> { new(reference, "fewer steps", solver, steps, "none", steps, null) };
        points.AddRange(fewer.Select(s => P($"{s} steps", "fewer steps", s, "none", s)));
        points.AddRange(intervals.Select(n => P($"DeepCache N={n}", "DeepCache", steps, $"deepcache:{n}", n)));
        // The shipped schedule's δ is run as the shipped schedule itself, so the paper report shares its samples.
        points.AddRange(deltas.Select(d => d == shippedDelta
            ? P($"Block Caching δ={Num(d)} (shipped)", "Block Caching", steps, "blockcache", d)
            : P($"Block Caching δ={Num(d)}", "Block Caching", steps, $"blockcache:{Num(d)}", d)));
        if (shippedDelta is double sd)
            points.Add(P($"Block Caching δ={Num(sd)} + scale-shift", "Block Caching + scale-shift", steps, "blockcache:ss", sd));
        points.AddRange(ucache.Select(t => P($"ucache {Num(t)}", "ucache", steps, $"ucache:{Num(t)}", t)));
        points.AddRange(online.Select(t => P($"online Block Caching {Num(t)}", "online Block Caching", steps, $"blockcache-online:{Num(t)}", t)));
        points.AddRange(taylor.Intervals.Select(n => P($"DeepCache N={n} + Taylor-1", "DeepCache + Taylor-1", steps, $"deepcache:{n}:taylor1", n)));
        points.AddRange(taylor.Deltas.Select(d => P($"Block Caching δ={Num(d)} + Taylor-1", "Block Caching + Taylor-1", steps, $"blockcache:{Num(d)}:taylor1", d)));
        points.AddRange(taylor.UCache.Select(t => P($"ucache {Num(t)} + Taylor-1", "ucache + Taylor-1", steps, $"ucache:{Num(t)}:taylor1", t)));
        points.AddRange(taylor.Online.Select(t => P($"online Block Caching {Num(t)} + Taylor-1", "online Block Caching + Taylor-1", steps, $"blockcache-online:{Num(t)}:taylor1", t)));
        return new Group(solver, steps, bar, points);
    }

    private static int Execute(StudySetup.Options options, ParseResult parse, Pipelines.PipelineLoadOptions load, Settings settings, CancellationToken cancel)
    {
        var groups = Groups(settings.Full);
        if (settings.Sweep is string only)
            groups = groups.Where(g => g.Id == only).ToList() is { Count: > 0 } picked ? picked
                : throw new DiffusionCacheException($"--sweep {only}: {(settings.Full ? "" : "without --full ")}the sweeps are {string.Join(", ", groups.Select(g => g.Id))}");
        var specs = groups.SelectMany(g => g.Points).ToList();
        string state = Path.Combine("runs", settings.Full ? "frontier" : "frontier-quick");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        using var setup = StudySetup.Open(options, parse, load, settings.Samples, settings.Batch, specs);
        AtomicFile.EnsureWritable(Path.Combine(settings.Out, "frontier.md"));
        Console.WriteLine($"frontier: {specs.Count} points x {settings.Samples} samples (batches kept in {setup.Study.Store.Folder}, resumable)");
        if (settings.SampleOnly)
        {
            var mine = settings.Shard is Sharding.Shard sh ? setup.Points.Where((_, i) => i % sh.Count == sh.Index).ToList() : setup.Points;
            setup.SampleAndScore(mine, cancel);
            Console.WriteLine($"samples and scores of {mine.Count} of {specs.Count} points are in {setup.Study.Store.Folder} ({clock.Elapsed.TotalMinutes:0} min); run again without --sample-only on an idle machine for the timings and the report");
            return 0;
        }
        var measured = setup.Measure(cancel);
        Directory.CreateDirectory(state);
        var results = setup.Time(measured, settings.TimingBatch, settings.Repeats, Path.Combine(state, $"timing-batch{settings.TimingBatch}.json"), cancel);
        var overhead = DecisionOverhead(setup, groups[0], settings, Path.Combine(state, $"overhead-batch{settings.TimingBatch}.json"), cancel);
        foreach (var share in results.Concat(overhead.Timed).Select(r => r.Timing!.CpuShare).Distinct().Where(s => s < 0.9))
            Console.WriteLine($"warning: timings were taken with {share:P0} of the CPU (other work was running); delete {state}/*.json and rerun on an idle machine for speedups to rely on");
        Directory.CreateDirectory(settings.Out);
        string prefix = Path.Combine(settings.Out, settings.Full ? "frontier" : "frontier-quick");
        var md = new StringBuilder();
        md.AppendLine($"# Speed–quality frontier: the embedded model, {settings.Samples} samples per point");
        md.AppendLine();
        md.AppendLine($"`./diffcache frontier{(settings.Full ? " --full" : "")}` — every point sampled from the same seeds (batch b of {settings.Batch} seeded with b, " +
            "sample i asks for class i mod 10), guidance 4. FID and KID against the Fashion-MNIST test split in two independent feature spaces " +
            "(`classifier`: the metric network, `resnet`: a ResNet of another architecture trained from another seed), each with a 95 % bootstrap " +
            "interval (200 resamples); class accuracy with its Wilson interval; PSNR/SSIM to the uncached samples. Speedup: median of within-round " +
            $"ratios to uncached sampling of the same step count, {settings.Repeats} rounds side by side in one process, {settings.TimingBatch} images per run " +
            "(range: slowest and fastest round). KID is ×10³.");
        var jsonGroups = new List<object>();
        foreach (var group in groups)
        {
            var rows = results.Where(r => group.Points.Any(p => p.Name == r.Point.Name)).ToList();
            md.AppendLine();
            md.AppendLine($"## {group.Title}");
            md.AppendLine();
            md.AppendLine($"![frontier {group.Title}]({Path.GetFileName(prefix)}-{group.Id}.png)");
            md.AppendLine();
            md.Append(Table(rows));
            var bars = Bars(rows, group);
            md.AppendLine();
            md.Append(bars.Markdown);
            FrontierPlot.Write(rows, $"{prefix}-{group.Id}.png", $"{group.Title}, {settings.Samples} samples per point");
            jsonGroups.Add(new { solver = group.Solver, steps = group.Steps, bar_speedup = group.BarSpeedup, points = rows.Select(Json), bars = bars.Json });
            PrintGroup(group, rows, bars.Console);
        }
        md.AppendLine();
        md.AppendLine("## Decision overhead of the adaptive policies");
        md.AppendLine();
        md.Append(overhead.Markdown);
        md.AppendLine();
        md.AppendLine($"Run time of this command: {clock.Elapsed.TotalMinutes:0} min (samples, scores and timings resumed from the store and the timing files where earlier runs had made them).");
        AtomicFile.WriteAllText($"{prefix}.md", md.ToString());
        AtomicFile.WriteAllText($"{prefix}.json", JsonSerializer.Serialize(new
        {
            model = setup.ModelPath, samples = settings.Samples, batch = settings.Batch, repeats = settings.Repeats, timing_batch = settings.TimingBatch,
            groups = jsonGroups, decision_overhead = overhead.Json,
        }, JsonOptions));
        Console.WriteLine(overhead.Console);
        Console.WriteLine($"wrote {prefix}.md, {prefix}.json and {string.Join(", ", groups.Select(g => $"{prefix}-{g.Id}.png"))} ({clock.Elapsed.TotalMinutes:0} min)");
        return 0;
    }

    internal static string Table(IReadOnlyList<StudyResult> rows)
    {
        var spaces = rows[0].Quality.Spaces.Select(s => s.Space).ToList();
        var sb = new StringBuilder();
        sb.Append("| method | point | speedup (range) | reused |");
        foreach (var s in spaces) sb.Append($" FID {s} | KID {s} |");
        sb.AppendLine(" class accuracy | PSNR | SSIM | vs uncached (paired) |");
        sb.Append("|---|---|---:|---:|");
        foreach (var _ in spaces) sb.Append("---:|---:|");
        sb.AppendLine("---:|---:|---:|---|");
        foreach (var r in rows)
        {
            var t = r.Timing!;
            sb.Append($"| {r.Point.Method} | {Short(r.Point.Name)} | {F(t.Speedup.Estimate, "0.00")}x ({F(t.Speedup.Lower, "0.00")}–{F(t.Speedup.Upper, "0.00")}) | {F(t.ReusedFraction * 100, "0")} % |");
            foreach (var s in r.Quality.Spaces) sb.Append($" {Cell(s.Fid)} | {Cell(s.Kid, 1000)} |");
            var acc = r.Quality.ClassAccuracy;
            sb.Append($" {F(acc.Estimate * 100, "0.0")} % [{F(acc.Lower * 100, "0.0")}, {F(acc.Upper * 100, "0.0")}] |");
            sb.Append(double.IsInfinity(r.Psnr) ? " — | — |" : $" {F(r.Psnr, "0.0")} | {F(r.Ssim, "0.000")} |");
            sb.AppendLine($" {(r.VersusReference is { } c ? Verdict(c) : "reference")} |");
        }
        return sb.ToString();
    }

    /// <summary>A point's name without its sweep.</summary>
    internal static string Short(string name) => name.IndexOf(" · ", StringComparison.Ordinal) is int i and >= 0 ? name[(i + 3)..] : name;

    private static object Json(StudyResult r) => new
    {
        method = r.Point.Method, name = r.Point.Name, solver = r.Point.Solver, steps = r.Point.Steps, cache = r.Point.Cache,
        cache_name = r.Point.CacheName, knob = r.Point.Knob,
        speedup = r.Timing?.Speedup, reused_fraction = r.Timing?.ReusedFraction, ms_per_image = r.Timing?.MsPerImage, rounds = r.Timing?.Rounds,
        quality = r.Quality, psnr = double.IsInfinity(r.Psnr) ? (double?)null : r.Psnr, ssim = r.Ssim,
        versus_reference = r.VersusReference is { } c ? new { verdict = c.Verdict.ToString(), differences = c.Differences, class_accuracy = c.ClassAccuracy } : null,
    };

    private sealed record BarReport(string Markdown, string Console, object Json);

    /// <summary>Issue #13's bars on one group: the methods at the bar speedup, and each caching point against the
    /// fewer-steps line at its own speedup, in every feature space.</summary>
    private static BarReport Bars(IReadOnlyList<StudyResult> rows, Group group)
    {
        var spaces = rows[0].Quality.Spaces.Select(s => s.Space).ToList();
        FrontierLine? Line(string method, int space)
        {
            var pts = rows.Where(r => r.Point.Method == method || r.Point.Reference is null)   // every line starts at uncached sampling
                .Select(r => (r.Timing!.Speedup.Estimate, r.Quality.Spaces[space].Fid)).ToList();
            return pts.Count == 0 ? null : new FrontierLine(pts);
        }
        var md = new StringBuilder();
        var console = new StringBuilder();
        md.AppendLine($"**FID at {F(group.BarSpeedup, "0.0")}x measured** (interpolated along each line; — where a line does not reach it):");
        md.AppendLine();
        md.AppendLine("| method |" + string.Concat(spaces.Select(s => $" FID {s} |")));
        md.AppendLine("|---|" + string.Concat(spaces.Select(_ => "---:|")));
        var atBar = new Dictionary<string, Interval?[]>();
        foreach (var method in Methods)
        {
            var values = spaces.Select((_, i) => Line(method, i)?.At(group.BarSpeedup)).ToArray();
            if (rows.All(r => r.Point.Method != method)) continue;
            atBar[method] = values;
            md.AppendLine($"| {method} |" + string.Concat(values.Select(v => v is Interval i ? $" {Cell(i)} |" : " — |")));
        }
        // The best new policy: lowest FID in the first space among those that reach the bar speedup.
        var reached = NewMethods.Where(m => atBar.TryGetValue(m, out var v) && v.All(x => x is not null)).ToList();
        string verdict;
        if (reached.Count == 0) verdict = $"no new policy reaches {F(group.BarSpeedup, "0.0")}x on this sweep";
        else
        {
            string best = reached.OrderBy(m => atBar[m][0]!.Value.Estimate).First();
            var against = new[] { "Block Caching", "DeepCache" }.Where(m => atBar.TryGetValue(m, out var v) && v.All(x => x is not null)).ToList();
            var parts = against.Select(m =>
            {
                var cmp = spaces.Select((s, i) => FrontierLine.CompareLower(atBar[best][i]!.Value, atBar[m][i]!.Value)).ToList();
                string word = cmp.All(c => c < 0) ? "better beyond the intervals" : cmp.Any(c => c > 0) ? "worse beyond the intervals in " +
                    string.Join(" and ", spaces.Where((_, i) => cmp[i] > 0)) : "at least as good (intervals overlap)";
                return $"vs {m}: {word}";
            });
            verdict = $"best new policy at {F(group.BarSpeedup, "0.0")}x: **{best}** — " + (against.Count == 0 ? "neither Block Caching nor DeepCache reaches that speed" : string.Join("; ", parts));
        }
        md.AppendLine();
        md.AppendLine(verdict + ".");
        console.AppendLine(verdict.Replace("**", ""));

        md.AppendLine();
        md.AppendLine("**Caching against fewer steps at equal measured speed** (each point's FID against the fewer-steps line at its own speedup):");
        md.AppendLine();
        var lines = spaces.Select((_, i) => Line("fewer steps", i)).ToList();
        var json = new List<object>();
        foreach (var method in Methods.Skip(1).Where(m => rows.Any(r => r.Point.Method == m)))
        {
            var counts = new int[3];   // better, not distinguishable, worse (in both spaces / otherwise)
            int outside = 0;
            foreach (var r in rows.Where(r => r.Point.Method == method))
            {
                var cmp = spaces.Select((_, i) => lines[i]?.At(r.Timing!.Speedup.Estimate) is Interval f
                    ? FrontierLine.CompareLower(r.Quality.Spaces[i].Fid, f) : (int?)null).ToList();
                if (cmp.Any(c => c is null)) { outside++; continue; }
                counts[cmp.All(c => c < 0) ? 0 : cmp.Any(c => c > 0) ? 2 : 1]++;
            }
            string line = $"{method}: {counts[0]} point(s) better than fewer steps in both spaces, {counts[1]} not distinguishable, {counts[2]} worse" +
                (outside > 0 ? $", {outside} outside the fewer-steps line's speed range" : "");
            md.AppendLine($"- {line}");
            console.AppendLine(line);
            json.Add(new { method, better = counts[0], not_distinguishable = counts[1], worse = counts[2], outside_range = outside });
        }
        return new BarReport(md.ToString(), console.ToString(), new
        {
            at_bar = atBar.Select(kv => new { method = kv.Key, fid = kv.Value }), verdict, versus_fewer_steps = json,
        });
    }

    private static void PrintGroup(Group group, IReadOnlyList<StudyResult> rows, string bars)
    {
        var table = new Table().Border(TableBorder.Simple).Title($"{group.Title}").AddColumn("point").AddColumn(new TableColumn("speedup").RightAligned()).AddColumn(new TableColumn("reused").RightAligned());
        foreach (var s in rows[0].Quality.Spaces) table.AddColumn(new TableColumn($"FID {s.Space}").RightAligned());
        table.AddColumn(new TableColumn("accuracy").RightAligned()).AddColumn("vs uncached");
        foreach (var r in rows)
            table.AddRow([Markup.Escape(Short(r.Point.Name)), $"{F(r.Timing!.Speedup.Estimate, "0.00")}x", $"{F(r.Timing.ReusedFraction * 100, "0")} %",
                .. r.Quality.Spaces.Select(s => Markup.Escape(Cell(s.Fid))), $"{F(r.Quality.ClassAccuracy.Estimate * 100, "0.0")} %",
                Markup.Escape(r.VersusReference is { } c ? Verdict(c) : "reference")]);
        AnsiConsole.Write(table);
        Console.Write(bars);
    }

    private sealed record OverheadReport(string Markdown, string Console, object Json, IReadOnlyList<StudyResult> Timed);

    /// <summary>Each adaptive policy's decision cost: the policy with a threshold so small that it computes every
    /// step (so all it adds is deciding and keeping its cache) against uncached sampling, side by side; online Block
    /// Caching also against static Block Caching computing every block every step, which keeps the same changes C
    /// but decides nothing, so the difference is the decision alone.</summary>
    private static OverheadReport DecisionOverhead(StudySetup setup, Group group, Settings settings, string path, CancellationToken cancel)
    {
        string reference = $"no cache, {group.Steps} steps";
        const string Static = "Block Caching, every block computing";
        const string Online = "online Block Caching, always computing";
        var specs = new[]
        {
            new PointSpec(reference, "fewer steps", group.Solver, group.Steps, "none", null, null),
            new PointSpec("ucache, always computing", "ucache", group.Solver, group.Steps, "ucache:1e-12", null, reference),
            new PointSpec(Online, "online Block Caching", group.Solver, group.Steps, "blockcache-online:1e-12", null, reference),
            new PointSpec(Static, "Block Caching", group.Solver, group.Steps, "blockcache:1e-12", null, reference),
        };
        var points = specs.Select(s =>
        {
            var choice = CacheChoice.Resolve(s.Cache, setup.Pipeline, s.Solver, s.Steps);
            return new StudyPoint(s.Name, s.Method, s.Solver, s.Steps, s.Cache, choice.Name, choice.Create, s.Reference);
        }).ToList();
        int repeats = 2 * settings.Repeats + 1;
        var placeholder = points.Select(p => new StudyResult(p, null!, null, 0, 0, null)).ToList();
        var timed = setup.Time(placeholder, settings.TimingBatch, repeats, path, cancel);
        var md = new StringBuilder();
        md.AppendLine($"A threshold of 10⁻¹² makes each policy compute every step, so what it costs over uncached sampling is its decision and " +
            $"bookkeeping alone ({group.Title}, {repeats} rounds side by side, {settings.TimingBatch} images per run; the bar is < 2 % of a step). " +
            $"Static Block Caching with δ = 10⁻¹² computes every block every step and keeps the same changes C as online Block Caching, " +
            "so online Block Caching's time over it is its decision alone (from the median speedups):");
        md.AppendLine();
        md.AppendLine("| policy | over uncached (median) | range over rounds | decision alone |");
        md.AppendLine("|---|---:|---:|---:|");
        var console = new StringBuilder();
        var json = new List<object>();
        double staticSpeedup = timed.Single(r => r.Point.Name == Static).Timing!.Speedup.Estimate;
        foreach (var r in timed.Skip(1))
        {
            var s = r.Timing!.Speedup;
            double median = 1 / s.Estimate - 1, low = 1 / s.Upper - 1, high = 1 / s.Lower - 1;
            double? decision = r.Point.Name == Online ? staticSpeedup / s.Estimate - 1 : null;
            string alone = decision is double d ? $"{F(d * 100, "0.0")} %" : "—";
            md.AppendLine($"| {r.Point.Name} | {F(median * 100, "0.0")} % | {F(low * 100, "0.0")} – {F(high * 100, "0.0")} % | {alone} |");
            console.AppendLine($"overhead, {r.Point.Name}: {F(median * 100, "0.0")} % of a step over uncached (rounds {F(low * 100, "0.0")} to {F(high * 100, "0.0")} %)" +
                (decision is double dd ? $", {F(dd * 100, "0.0")} % over static Block Caching computing every block (the decision alone)" : ""));
            json.Add(new { policy = r.Point.Name, overhead_median = median, overhead_low = low, overhead_high = high, decision_alone = decision, rounds = r.Timing.Rounds });
        }

        // The same policies timed from inside (TimedPolicy): the time spent in each policy's own code, per generation,
        // as a share of an uncached generation of the same round. Free of the noise above, which is larger than the bar.
        const int Rounds = 5;
        var own = OwnTimes(setup, group, points, settings.TimingBatch, Rounds, cancel);
        md.AppendLine();
        md.AppendLine($"Measured directly ({nameof(TimedPolicy)}: the time each policy spends in its own code — deciding, keeping its cache, its " +
            $"step callbacks — never in the model's compute), as a share of an uncached generation of the same round (median of {Rounds} rounds, " +
            "range); online Block Caching's decision alone is its own time minus static Block Caching's, which keeps the same changes C:");
        md.AppendLine();
        md.AppendLine("| policy | own time, % of an uncached step | range | decision alone |");
        md.AppendLine("|---|---:|---:|---:|");
        var staticOwn = own[Static];
        foreach (var name in new[] { "ucache, always computing", Online, Static })
        {
            var shares = own[name];
            double? alone = name == Online ? Median(shares.Zip(staticOwn, (a, b) => a - b).ToList()) : null;
            md.AppendLine($"| {name} | {F(Median(shares) * 100, "0.00")} % | {F(shares.Min() * 100, "0.00")} – {F(shares.Max() * 100, "0.00")} % | " +
                $"{(alone is double d ? $"{F(d * 100, "0.00")} %" : "—")} |");
            console.AppendLine($"own time, {name}: {F(Median(shares) * 100, "0.00")} % of an uncached step" +
                (alone is double dd ? $", decision alone {F(dd * 100, "0.00")} %" : ""));
            json.Add(new { policy = name, own_time_share_median = Median(shares), own_time_shares = shares, decision_alone_share = alone });
        }
        return new OverheadReport(md.ToString(), console.ToString(), json, timed);
    }

    /// <summary>Per policy, its own time (<see cref="TimedPolicy"/>) over <paramref name="rounds"/> rounds as shares of the
    /// uncached generation timed in the same round (after one warm-up round).</summary>
    private static Dictionary<string, List<double>> OwnTimes(StudySetup setup, Group group, IReadOnlyList<StudyPoint> points, int batch, int rounds,
        CancellationToken cancel)
    {
        using var target = BenchTargets.Open(setup.ModelPath, group.Solver, setup.Study.Guidance, batch, null, setup.Load);
        var shares = points.Skip(1).ToDictionary(p => p.Name, _ => new List<double>());
        for (int round = 0; round <= rounds; round++)
        {
            cancel.ThrowIfCancellationRequested();
            var clock = System.Diagnostics.Stopwatch.StartNew();
            target.Run(group.Steps, null).Dispose();
            double uncached = clock.Elapsed.TotalSeconds;
            foreach (var p in points.Skip(1))
            {
                using var policy = new TimedPolicy(p.Create!());
                target.Run(group.Steps, policy).Dispose();
                if (round > 0) shares[p.Name].Add(policy.OwnTime.TotalSeconds / uncached);
            }
        }
        return shares;
    }

    private static double Median(IReadOnlyList<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[sorted.Count / 2 - 1] + sorted[sorted.Count / 2]) / 2;
    }
}
