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

/// <summary><c>diffcache eval</c>: FID (in the metric classifier's feature space) and class accuracy of generated
/// samples, next to the floors that say what "good" means here.</summary>
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
        var command = new Command("eval", "FID and class accuracy of generated samples, with floors") { model, classifier, solver, steps, guidance, samples, batch, json, cache, configs };
        var runtime = new RuntimeOptions();
        runtime.AddTo(command);
        command.SetAction((parse, cancel) => Task.FromResult(CommandRunner.Run(() =>
        {
            var load = runtime.Apply(parse);
            var runs = parse.GetValue(configs) is string list
                ? list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(ParseRun).ToList()
                : [new Run(parse.GetValue(solver)!, parse.GetValue(steps), parse.GetValue(cache)!)];
            return Execute(parse.GetValue(model)!, parse.GetValue(classifier)!, runs, parse.GetValue(guidance), parse.GetValue(samples),
                parse.GetValue(batch), parse.GetValue(json), parse.GetValue(configs) is not null, load, cancel);
        })));
        return command;
    }

    private sealed record Run(string Solver, int Steps, string Cache);

    private static Run ParseRun(string text)
    {
        var parts = text.Split(':', 3);   // the cache part may hold colons itself (deepcache:5:0)
        if (parts.Length != 3 || !int.TryParse(parts[1], out int steps))
            throw new DiffusionCacheException($"--configs entry '{text}': expected solver:steps:cache, e.g. ddim:50:blockcache or ddim:50:deepcache:5");
        return new Run(parts[0], steps, parts[2]);
    }

    private static int Execute(string modelDir, string classifierDir, IReadOnlyList<Run> runs, double guidance, int samples,
        int batch, string? json, bool asList, PipelineLoadOptions load, CancellationToken cancel)
    {
        var clock = Stopwatch.StartNew();
        // The metric network stays float32 on the CPU whatever the runtime options, so FID and accuracy are measured
        // the same way for every model precision and device; only the generating pipeline follows them.
        using var classifier = ClassifierFolder.Load(DefaultPaths.Resolve(classifierDir));
        using var pipeline = ClassConditionalPipeline.Load(DefaultPaths.Resolve(modelDir), load);
        // Every run's solver, step count and cache is checked before any work.
        var caches = runs.Select(r =>
        {
            using (var check = pipeline.CreateScheduler(r.Solver)) check.SetTimesteps(r.Steps);
            return CacheChoice.Resolve(r.Cache, pipeline, r.Solver, r.Steps);
        }).ToList();
        try
        {
            return Evaluate(modelDir, pipeline, classifier, runs, caches, guidance, samples, batch, json, asList, RuntimeOptions.Describe(load), clock, cancel);
        }
        finally
        {
            foreach (var cache in caches) cache.Dispose();
        }
    }

    private static int Evaluate(string modelDir, ClassConditionalPipeline pipeline, FashionClassifier classifier, IReadOnlyList<Run> runs,
        IReadOnlyList<CacheChoice> caches, double guidance, int samples, int batch, string? json, bool asList,
        (string Dtype, string Device) runtime, Stopwatch clock, CancellationToken cancel)
    {
        var metricDevice = classifier.parameters().First().device;
        FashionMnist.EnsureInstalled();
        using var test = FashionMnist.Load(FashionMnistSplit.Test);
        using var train = FashionMnist.Load(FashionMnistSplit.Train);

        using var testFeatures = SampleQuality.Features(classifier, test.Images);
        using var reference = FeatureStatistics.Of(testFeatures);
        double floorTrain, floorAutoencoder;
        using (var trainFeatures = SampleQuality.Features(classifier, train.Images))
        using (var trainStats = FeatureStatistics.Of(trainFeatures))
            floorTrain = trainStats.FrechetDistance(reference);
        using (var reconstructed = Reconstruct(pipeline, test.Images, metricDevice))
        using (var recFeatures = SampleQuality.Features(classifier, reconstructed))
        using (var recStats = FeatureStatistics.Of(recFeatures))
            floorAutoencoder = recStats.FrechetDistance(reference);
        double testAccuracy = ClassifierTraining.Accuracy(classifier, test.Images, test.Labels);

        var table = new Table().Border(TableBorder.Simple).AddColumn("samples").AddColumn(new TableColumn("class accuracy").RightAligned())
            .AddColumn(new TableColumn("FID").RightAligned()).AddColumn(new TableColumn("sampling s").RightAligned());
        var results = new List<object>();
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
            using (var scored = images.to(ScalarType.Float32, metricDevice))   // the pipeline's device -> the metric network's
                report = SampleQuality.Evaluate(classifier, scored, labels, reference);
            string name = $"{run.Solver}, {run.Steps} steps, guidance {guidance}, {cache.Name}" +
                (runtime is ("fp32", "cpu") ? "" : $", {runtime.Dtype} on {runtime.Device}");
            table.AddRow(Markup.Escape(name), $"{report.ClassAccuracy:P2}", $"{report.Fid:0.000}", $"{sampling.Elapsed.TotalSeconds:0}");
            Console.WriteLine($"{name}: class accuracy {report.ClassAccuracy:P2}, FID {report.Fid:0.000} ({samples} samples, {sampling.Elapsed.TotalSeconds:0} s)");
            results.Add(new
            {
                model = modelDir, solver = run.Solver, steps = run.Steps, guidance, samples, batch, cache = cache.Name,
                dtype = runtime.Dtype, device = runtime.Device,
                class_accuracy = report.ClassAccuracy, fid = report.Fid, fid_floor = floorTrain,
                fid_floor_autoencoder = floorAutoencoder, classifier_test_accuracy = testAccuracy,
                sampling_seconds = sampling.Elapsed.TotalSeconds,
            });
            if (json is not null)   // written after every run, so a long job's finished runs are kept
                AtomicFile.WriteAllText(json, JsonSerializer.Serialize(asList ? results : results[0], new JsonSerializerOptions { WriteIndented = true }));
        }
        table.AddRow("floor: train set vs test", "", $"{floorTrain:0.000}", "");
        table.AddRow("floor: test through the autoencoder vs test", "", $"{floorAutoencoder:0.000}", "");
        table.AddRow("classifier on the test set", $"{testAccuracy:P2}", "", "");
        AnsiConsole.Write(table);
        Console.WriteLine("FID here is measured in the metric classifier's 256-d feature space, not Inception-FID.");
        Console.WriteLine($"time: {clock.Elapsed.TotalSeconds:0} s");
        if (json is not null) Console.WriteLine($"wrote {json}");
        return 0;
    }

    /// <summary>The images through the pipeline's autoencoder (in its compute type on its device), as float32 on
    /// <paramref name="metricDevice"/>.</summary>
    private static Tensor Reconstruct(ClassConditionalPipeline pipeline, Tensor images, Device metricDevice)
    {
        using var noGrad = no_grad();
        var weight = pipeline.Vae.parameters().First();
        var parts = new List<Tensor>();
        for (long i = 0; i < images.shape[0]; i += 500)
        {
            using var scope = NewDisposeScope();
            using var posterior = pipeline.Vae.Encode(images.narrow(0, i, Math.Min(500, images.shape[0] - i)).to(weight.dtype, weight.device));
            parts.Add(pipeline.Vae.Decode(posterior.Mode()).to(ScalarType.Float32, metricDevice).clamp(-1, 1).MoveToOuterDisposeScope());
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
