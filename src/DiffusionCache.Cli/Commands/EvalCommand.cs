using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using DiffusionCache.Cli.Reporting;
using DiffusionCache.Data;
using DiffusionCache.Evaluation;
using DiffusionCache.Formats;
using DiffusionCache.Pipelines;
using DiffusionCache.Training;
using Spectre.Console;
using static TorchSharp.torch;

namespace DiffusionCache.Cli.Commands;

/// <summary><c>diffcache eval</c>: FID and KID in two independent metric networks' feature spaces and class accuracy
/// of generated samples, with bootstrap intervals and paired comparisons against the first configuration, next to
/// the floors that say what "good" means here.</summary>
internal static class EvalCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "class-conditional pipeline folder", DefaultValueFactory = _ => TrainCommand.DefaultModel };
        var classifier = new Option<string>("--classifier") { Description = "metric network folder", DefaultValueFactory = _ => ClassifierFolder.DefaultPath };
        var solver = new Option<string>("--solver") { Description = "ddim, ddpm, plms, dpm++ or euler", DefaultValueFactory = _ => "ddim" };
        var steps = new Option<int>("--steps") { Description = "denoising steps", DefaultValueFactory = _ => 50 };
        var guidance = new Option<double>("--guidance") { Description = "classifier-free guidance scale", DefaultValueFactory = _ => 4.0 };
        var samples = new Option<int>("--samples") { Description = "generated samples (balanced over classes)", DefaultValueFactory = _ => 2000 };
        var batch = new Option<int>("--batch") { Description = "samples per sampling batch (its index is its seed)", DefaultValueFactory = _ => 100 };
        var json = new Option<string?>("--json") { Description = "also write the figures as JSON (an object; with --configs, a list)" };
        var cache = new Option<string>("--cache") { Description = "none, blockcache (the model's shipped schedule), blockcache:ss (with its scale-shift adjustment), deepcache[:N[:branch[:center:pow]]], or a schedule JSON file", DefaultValueFactory = _ => "none" };
        var configs = new Option<string?>("--configs") { Description = "several runs sharing one set of floors: solver:steps:cache,... (overrides --solver/--steps/--cache)" };
        var classifierB = new Option<string>("--classifier-b") { Description = "second metric network folder (an independent feature space)", DefaultValueFactory = _ => ClassifierFolder.SecondDefaultPath };
        var bootstrap = new Option<int>("--bootstrap") { Description = "bootstrap replicates for the intervals (seed 0, 95 %)", DefaultValueFactory = _ => 200 };
        var command = new Command("eval", "FID and KID in two feature spaces and class accuracy of generated samples, with intervals and floors") { model, classifier, solver, steps, guidance, samples, batch, json, cache, configs, classifierB, bootstrap };
        command.SetAction((parse, cancel) => Task.FromResult(CommandRunner.Run(() =>
        {
            var runs = parse.GetValue(configs) is string list
                ? list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(ParseRun).ToList()
                : [new Run(parse.GetValue(solver)!, parse.GetValue(steps), parse.GetValue(cache)!)];
            var metrics = new Metrics(parse.GetValue(classifierB)!, new BootstrapOptions(parse.GetValue(bootstrap)));
            metrics.Bootstrap.Validate();
            return Execute(parse.GetValue(model)!, parse.GetValue(classifier)!, runs, parse.GetValue(guidance), parse.GetValue(samples),
                parse.GetValue(batch), parse.GetValue(json), parse.GetValue(configs) is not null, cancel, metrics);
        })));
        return command;
    }

    private sealed record Run(string Solver, int Steps, string Cache);

    /// <summary>The second feature space's network folder and how intervals are drawn.</summary>
    private sealed record Metrics(string ClassifierB, BootstrapOptions Bootstrap);

    private static Run ParseRun(string text)
    {
        var parts = text.Split(':', 3);   // the cache part may hold colons itself (deepcache:5:0)
        if (parts.Length != 3 || !int.TryParse(parts[1], out int steps))
            throw new DiffusionCacheException($"--configs entry '{text}': expected solver:steps:cache, e.g. ddim:50:blockcache or ddim:50:deepcache:5");
        return new Run(parts[0], steps, parts[2]);
    }

    private static int Execute(string modelDir, string classifierDir, IReadOnlyList<Run> runs, double guidance, int samples,
        int batch, string? json, bool asList, CancellationToken cancel, Metrics metrics)
    {
        var clock = Stopwatch.StartNew();
        using var classifier = ClassifierFolder.Load(DefaultPaths.Resolve(classifierDir));
        using var classifierB = ClassifierFolder.LoadNetwork(DefaultPaths.Resolve(metrics.ClassifierB));
        using var pipeline = ClassConditionalPipeline.Load(DefaultPaths.Resolve(modelDir));
        // Every run's solver, step count and cache is checked before any work.
        var caches = runs.Select(r =>
        {
            using (var check = pipeline.CreateScheduler(r.Solver)) check.SetTimesteps(r.Steps);
            return CacheChoice.Resolve(r.Cache, pipeline, r.Solver, r.Steps);
        }).ToList();
        try
        {
            return Evaluate(modelDir, pipeline, classifier, runs, caches, guidance, samples, batch, json, asList, clock, cancel,
                [new FeatureSpace("classifier", classifier), new FeatureSpace("resnet", classifierB)], metrics.Bootstrap);
        }
        finally
        {
            foreach (var cache in caches) cache.Dispose();
        }
    }

    private static int Evaluate(string modelDir, ClassConditionalPipeline pipeline, FashionClassifier classifier, IReadOnlyList<Run> runs,
        IReadOnlyList<CacheChoice> caches, double guidance, int samples, int batch, string? json, bool asList, Stopwatch clock,
        CancellationToken cancel, IReadOnlyList<FeatureSpace> spaces, BootstrapOptions bootstrap)
    {
        FashionMnist.EnsureInstalled();
        using var test = FashionMnist.Load(FashionMnistSplit.Test);
        using var train = FashionMnist.Load(FashionMnistSplit.Train);

        // Per space: the test set as reference. The floors (FID on the whole train set and the reconstructed test set;
        // KID, unbiased at any N, on the first 2000 images of each) come after the runs, which matter more.
        var references = new List<ReferenceFeatures>();
        try
        {
            foreach (var space in spaces) references.Add(ReferenceFeatures.Of(space, test.Images));
            Floors ComputeFloors()
            {
                using var reconstructed = Reconstruct(pipeline, test.Images);
                var perSpace = new List<SpaceFloor>();
                for (int k = 0; k < spaces.Count; k++)
                {
                    using var trainFeatures = spaces[k].Features(train.Images);
                    using var trainSubset = trainFeatures.narrow(0, 0, 2000);
                    using var recFeatures = spaces[k].Features(reconstructed);
                    using var recSubset = recFeatures.narrow(0, 0, 2000);
                    perSpace.Add(new(references[k].Fid(trainFeatures), references[k].Kid(trainSubset), references[k].Fid(recFeatures), references[k].Kid(recSubset)));
                }
                return new Floors(perSpace, ClassifierTraining.Accuracy(classifier, test.Images, test.Labels));
            }
            return EvaluateRuns(modelDir, pipeline, classifier, runs, caches, guidance, samples, batch, json, asList, clock, cancel,
                spaces, references, ComputeFloors, bootstrap);
        }
        finally
        {
            foreach (var r in references) r.Dispose();
        }
    }

    private sealed record SpaceFloor(double Fid, double Kid, double FidAutoencoder, double KidAutoencoder);
    private sealed record Floors(IReadOnlyList<SpaceFloor> PerSpace, double TestAccuracy);

    private static int EvaluateRuns(string modelDir, ClassConditionalPipeline pipeline, FashionClassifier classifier, IReadOnlyList<Run> runs,
        IReadOnlyList<CacheChoice> caches, double guidance, int samples, int batch, string? json, bool asList, Stopwatch clock,
        CancellationToken cancel, IReadOnlyList<FeatureSpace> spaces, IReadOnlyList<ReferenceFeatures> references,
        Func<Floors> computeFloors, BootstrapOptions bootstrap)
    {
        string pct = $"{bootstrap.Level * 100:0.#} %";
        // Cells hold brackets (intervals), which Spectre would read as markup: every cell and header is escaped.
        var table = new Table().Border(TableBorder.Simple).AddColumn("samples").AddColumn(new TableColumn(Markup.Escape($"class accuracy [{pct}]")).RightAligned());
        foreach (var space in spaces)
            table.AddColumn(new TableColumn(Markup.Escape($"FID {space.Name} [{pct}]")).RightAligned())
                .AddColumn(new TableColumn(Markup.Escape($"KID×10³ {space.Name} [{pct}]")).RightAligned());
        table.AddColumn(new TableColumn("sampling s").RightAligned());
        var results = new List<Func<Floors?, object>>();
        var reports = new List<(string Name, QualityReport Report)>();
        for (int i = 0; i < runs.Count; i++)
        {
            var (run, cache) = (runs[i], caches[i]);
            var sampling = Stopwatch.StartNew();
            var (images, labels) = ProgressView.Run($"eval {run.Solver} {run.Steps} {run.Cache}", samples, p => SampleQuality.Generate(
                pipeline, run.Solver, run.Steps, guidance, samples, batch, cache.Create, progress: new Progress(p), cancel: cancel));
            sampling.Stop();
            QualityReport report;
            using (images)
            using (labels)
                report = SampleQuality.Evaluate(classifier, spaces, references, images, labels, bootstrap);
            string name = $"{run.Solver}, {run.Steps} steps, guidance {guidance}, {cache.Name}";
            reports.Add((name, report));
            AddRow(table, [name, Percent(report.ClassAccuracy),
                .. report.Spaces.SelectMany(s => new[] { s.Fid.ToString("0.000"), Scaled(s.Kid, 1e3).ToString("0.000") }),
                $"{sampling.Elapsed.TotalSeconds:0}"]);
            Console.WriteLine($"{name}: class accuracy {Percent(report.ClassAccuracy)}, " + string.Join(", ", report.Spaces.Select(s =>
                $"{s.Space}: FID {s.Fid.ToString("0.000")}, KID×10³ {Scaled(s.Kid, 1e3).ToString("0.000")}")) +
                $" ({samples} samples, {pct} intervals from {bootstrap.Replicates} bootstrap resamples; {sampling.Elapsed.TotalSeconds:0} s)");
            QualityComparison? comparison = i == 0 ? null : SampleQuality.Compare(report, reports[0].Report);
            if (comparison is not null) Console.WriteLine("  " + comparison.Describe(name, reports[0].Name, bootstrap.Level));
            double seconds = sampling.Elapsed.TotalSeconds;
            results.Add(floors => new
            {
                model = modelDir, solver = run.Solver, steps = run.Steps, guidance, samples, batch, cache = cache.Name,
                class_accuracy = report.ClassAccuracy.Estimate, class_accuracy_interval = Bounds(report.ClassAccuracy),
                fid = report.Spaces[0].Fid.Estimate, fid_floor = floors?.PerSpace[0].Fid,
                fid_floor_autoencoder = floors?.PerSpace[0].FidAutoencoder, classifier_test_accuracy = floors?.TestAccuracy,
                sampling_seconds = seconds,
                bootstrap = new { replicates = bootstrap.Replicates, seed = bootstrap.Seed, level = bootstrap.Level },
                spaces = report.Spaces.Select((s, k) => new
                {
                    space = s.Space, fid = s.Fid.Estimate, fid_interval = Bounds(s.Fid), kid = s.Kid.Estimate, kid_interval = Bounds(s.Kid),
                    fid_floor = floors?.PerSpace[k].Fid, kid_floor = floors?.PerSpace[k].Kid,
                    fid_floor_autoencoder = floors?.PerSpace[k].FidAutoencoder, kid_floor_autoencoder = floors?.PerSpace[k].KidAutoencoder,
                }).ToList(),
                versus_first = comparison is null ? null : new
                {
                    first = reports[0].Name, verdict = comparison.Verdict.ToString(), summary = comparison.Describe(name, reports[0].Name, bootstrap.Level),
                    class_accuracy_difference = comparison.ClassAccuracy.Estimate, class_accuracy_difference_interval = Bounds(comparison.ClassAccuracy),
                    differences = comparison.Differences.Select(d => new
                    {
                        space = d.Space, metric = d.Metric, difference = d.Difference.Estimate, interval = Bounds(d.Difference), verdict = d.Verdict.ToString(),
                    }).ToList(),
                },
            });
            WriteJson(json, results, null, asList);   // after every run (floors still null), so a long job's finished runs are kept
        }
        var computed = computeFloors();
        WriteJson(json, results, computed, asList);
        var floorList = computed.PerSpace;
        AddRow(table, ["floor: train set vs test", "", .. floorList.SelectMany(f => new[] { $"{f.Fid:0.000}", $"{f.Kid * 1e3:0.000}" }), ""]);
        AddRow(table, ["floor: test through the autoencoder vs test", "", .. floorList.SelectMany(f => new[] { $"{f.FidAutoencoder:0.000}", $"{f.KidAutoencoder * 1e3:0.000}" }), ""]);
        AddRow(table, ["classifier on the test set", $"{computed.TestAccuracy:P2}", .. spaces.SelectMany(_ => new[] { "", "" }), ""]);
        AnsiConsole.Write(table);
        Console.WriteLine($"FID and KID are measured in the metric networks' feature spaces ({string.Join(", ", spaces.Select(s => s.Name))}), " +
            "not Inception's; intervals: percentile bootstrap over the generated samples (reference fixed), Wilson for accuracy.");
        Console.WriteLine($"time: {clock.Elapsed.TotalSeconds:0} s");
        if (json is not null) Console.WriteLine($"wrote {json}");
        return 0;
    }

    private static void WriteJson(string? json, List<Func<Floors?, object>> results, Floors? floors, bool asList)
    {
        if (json is null) return;
        var objects = results.Select(r => r(floors)).ToList();
        AtomicFile.WriteAllText(json, JsonSerializer.Serialize(asList ? objects : objects[0], new JsonSerializerOptions { WriteIndented = true }));
    }

    private static void AddRow(Table table, string[] cells) => table.AddRow(cells.Select(Markup.Escape).ToArray());
    private static string Percent(Interval i) => $"{i.Estimate:P2} [{i.Lower * 100:0.00}, {i.Upper * 100:0.00}]";
    private static Interval Scaled(Interval i, double factor) => new(i.Estimate * factor, i.Lower * factor, i.Upper * factor);
    private static double[] Bounds(Interval i) => [i.Lower, i.Upper];

    private static Tensor Reconstruct(ClassConditionalPipeline pipeline, Tensor images)
    {
        using var noGrad = no_grad();
        var parts = new List<Tensor>();
        for (long i = 0; i < images.shape[0]; i += 500)
        {
            using var scope = NewDisposeScope();
            using var posterior = pipeline.Vae.Encode(images.narrow(0, i, Math.Min(500, images.shape[0] - i)));
            parts.Add(pipeline.Vae.Decode(posterior.Mode()).clamp(-1, 1).MoveToOuterDisposeScope());
        }
        var all = cat(parts);
        foreach (var p in parts) p.Dispose();
        return all;
    }

    private sealed class Progress(IProgress<(long Done, string Status)> inner) : IProgress<long>
    {
        public void Report(long value) => inner.Report((value, "samples"));
    }
}
