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
        var json = new Option<string?>("--json") { Description = "also write the figures as JSON" };
        var cache = new Option<string>("--cache") { Description = "none, blockcache (the model's shipped schedule), deepcache, or a schedule JSON file", DefaultValueFactory = _ => "none" };
        var command = new Command("eval", "FID and class accuracy of generated samples, with floors") { model, classifier, solver, steps, guidance, samples, batch, json, cache };
        command.SetAction((parse, cancel) => Task.FromResult(CommandRunner.Run(() => Execute(parse.GetValue(model)!, parse.GetValue(classifier)!,
            parse.GetValue(solver)!, parse.GetValue(steps), parse.GetValue(guidance), parse.GetValue(samples), parse.GetValue(batch),
            parse.GetValue(json), parse.GetValue(cache)!, cancel))));
        return command;
    }

    private static int Execute(string modelDir, string classifierDir, string solver, int steps, double guidance, int samples,
        int batch, string? json, string cacheChoice, CancellationToken cancel)
    {
        var clock = Stopwatch.StartNew();
        using var classifier = ClassifierFolder.Load(DefaultPaths.Resolve(classifierDir));
        using var pipeline = ClassConditionalPipeline.Load(DefaultPaths.Resolve(modelDir));
        using (var check = pipeline.CreateScheduler(solver)) check.SetTimesteps(steps);   // bad solver/steps fail before any work
        var cache = CacheChoice.Resolve(cacheChoice, pipeline, solver, steps);
        FashionMnist.EnsureInstalled();
        using var test = FashionMnist.Load(FashionMnistSplit.Test);
        using var train = FashionMnist.Load(FashionMnistSplit.Train);

        using var testFeatures = SampleQuality.Features(classifier, test.Images);
        using var reference = FeatureStatistics.Of(testFeatures);
        double floorTrain, floorAutoencoder;
        using (var trainFeatures = SampleQuality.Features(classifier, train.Images))
        using (var trainStats = FeatureStatistics.Of(trainFeatures))
            floorTrain = trainStats.FrechetDistance(reference);
        using (var reconstructed = Reconstruct(pipeline, test.Images))
        using (var recFeatures = SampleQuality.Features(classifier, reconstructed))
        using (var recStats = FeatureStatistics.Of(recFeatures))
            floorAutoencoder = recStats.FrechetDistance(reference);
        double testAccuracy = ClassifierTraining.Accuracy(classifier, test.Images, test.Labels);

        var sampling = Stopwatch.StartNew();
        var (images, labels) = ProgressView.Run("eval", samples, p => SampleQuality.Generate(pipeline, solver, steps, guidance,
            samples, batch, cache.Create, progress: new Progress(p), cancel: cancel));
        sampling.Stop();
        QualityReport report;
        using (images)
        using (labels)
            report = SampleQuality.Evaluate(classifier, images, labels, reference);

        var table = new Table().Border(TableBorder.Simple).AddColumn("figure").AddColumn(new TableColumn("value").RightAligned());
        table.AddRow($"class accuracy of samples ({solver}, {steps} steps, guidance {guidance}, {cache.Name})", $"{report.ClassAccuracy:P2}");
        table.AddRow($"FID samples vs test ({samples} samples)", $"{report.Fid:0.000}");
        table.AddRow("FID floor: train set vs test", $"{floorTrain:0.000}");
        table.AddRow("FID floor: test through the autoencoder vs test", $"{floorAutoencoder:0.000}");
        table.AddRow("classifier accuracy on the test set", $"{testAccuracy:P2}");
        AnsiConsole.Write(table);
        Console.WriteLine("FID here is measured in the metric classifier's 256-d feature space, not Inception-FID.");
        Console.WriteLine($"time: {clock.Elapsed.TotalSeconds:0} s ({sampling.Elapsed.TotalSeconds:0} s sampling)");
        if (json is not null)
        {
            AtomicFile.WriteAllText(json, JsonSerializer.Serialize(new
            {
                model = modelDir, solver, steps, guidance, samples, batch, cache = cache.Name,
                class_accuracy = report.ClassAccuracy, fid = report.Fid, fid_floor = floorTrain,
                fid_floor_autoencoder = floorAutoencoder, classifier_test_accuracy = testAccuracy,
                sampling_seconds = sampling.Elapsed.TotalSeconds,
            }, new JsonSerializerOptions { WriteIndented = true }));
            Console.WriteLine($"wrote {json}");
        }
        return 0;
    }

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
