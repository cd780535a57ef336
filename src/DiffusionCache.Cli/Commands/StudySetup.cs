using System.CommandLine;
using DiffusionCache.Cli.Reporting;
using DiffusionCache.Data;
using DiffusionCache.Evaluation;
using DiffusionCache.Pipelines;

namespace DiffusionCache.Cli.Commands;

/// <summary>A point as a command defines it, before its cache text is resolved against the model.</summary>
/// <param name="Name">Unique label.</param>
/// <param name="Method">Line or row family.</param>
/// <param name="Solver">Solver name.</param>
/// <param name="Steps">Denoising steps.</param>
/// <param name="Cache">The <c>--cache</c> text.</param>
/// <param name="Knob">The method's knob value at this point.</param>
/// <param name="Reference">The uncached point it is measured against; null for a reference.</param>
internal sealed record PointSpec(string Name, string Method, string Solver, int Steps, string Cache, double? Knob, string? Reference);

/// <summary>
/// What the frontier and the paper report share: the embedded model, the metric network (class accuracy and the
/// first feature space) and the second, independent one, their Fashion-MNIST test-split references, a
/// <see cref="SampleStore"/> under <c>runs/samples</c>, and the points resolved to cache policies — all checked
/// before any sampling.
/// </summary>
internal sealed class StudySetup : IDisposable
{
    /// <summary>The options every study command takes (fresh instances per command).</summary>
    public sealed class Options
    {
        public readonly Option<string> Model = new("--model") { Description = "class-conditional pipeline folder", DefaultValueFactory = _ => TrainCommand.DefaultModel };
        public readonly Option<string> Classifier = new("--classifier") { Description = "metric network: class accuracy and the first feature space", DefaultValueFactory = _ => ClassifierFolder.DefaultPath };
        public readonly Option<string> SecondClassifier = new("--second-classifier") { Description = "an independent metric network: the second feature space", DefaultValueFactory = _ => ClassifierFolder.SecondDefaultPath };
        public readonly Option<string> Store = new("--store") { Description = "folder of generated sample batches, shared between runs (resumable)", DefaultValueFactory = _ => "runs/samples" };
        public readonly Option<double> Guidance = new("--guidance") { Description = "classifier-free guidance scale", DefaultValueFactory = _ => 4.0 };

        public void AddTo(Command command)
        {
            foreach (var o in new Option[] { Model, Classifier, SecondClassifier, Store, Guidance }) command.Options.Add(o);
        }
    }

    private readonly List<IDisposable> _owned = [];
    private readonly List<CacheChoice> _choices = [];

    public required string ModelPath { get; init; }
    public required ClassConditionalPipeline Pipeline { get; init; }
    public required Study Study { get; init; }
    public required PipelineLoadOptions Load { get; init; }

    /// <summary>Loads everything and resolves <paramref name="specs"/>; any bad value fails here, before sampling.</summary>
    public static StudySetup Open(Options options, ParseResult parse, PipelineLoadOptions load, int samples, int batch, IReadOnlyList<PointSpec> specs)
    {
        string modelDir = parse.GetValue(options.Model)!;
        if (samples < 2) throw new DiffusionCacheException("--samples must be at least 2");
        if (batch < 1) throw new DiffusionCacheException("--batch must be positive");
        var owned = new List<IDisposable>();
        try
        {
            var classifier = ClassifierFolder.LoadNetwork(DefaultPaths.Resolve(parse.GetValue(options.Classifier)!));
            owned.Add(classifier);
            var second = ClassifierFolder.LoadNetwork(DefaultPaths.Resolve(parse.GetValue(options.SecondClassifier)!));
            owned.Add(second);
            var pipeline = ClassConditionalPipeline.Load(DefaultPaths.Resolve(modelDir), load);
            owned.Add(pipeline);
            var choices = specs.Select(s =>
            {
                using (var scheduler = pipeline.CreateScheduler(s.Solver)) scheduler.SetTimesteps(s.Steps);
                var choice = CacheChoice.Resolve(s.Cache, pipeline, s.Solver, s.Steps);
                owned.Add(choice);
                return choice;
            }).ToList();
            var spaces = new List<FeatureSpace> { new("classifier", classifier), new("resnet", second) };
            var references = References(spaces);
            owned.AddRange(references);
            var study = new Study
            {
                Pipeline = pipeline, Model = modelDir, Classifier = classifier, Spaces = spaces, References = references,
                Store = new SampleStore(parse.GetValue(options.Store)!), Samples = samples, Batch = batch, Guidance = parse.GetValue(options.Guidance),
            };
            owned.Add(study);
            var setup = new StudySetup { ModelPath = modelDir, Pipeline = pipeline, Study = study, Load = load };
            setup._owned.AddRange(owned);
            setup._choices.AddRange(choices);
            setup.Points = [.. specs.Select((s, i) => new StudyPoint(s.Name, s.Method, s.Solver, s.Steps, s.Cache, choices[i].Name,
                choices[i].Create, s.Reference) { Knob = s.Knob, CacheFingerprint = choices[i].Fingerprint })];
            return setup;
        }
        catch
        {
            for (int i = owned.Count - 1; i >= 0; i--) owned[i].Dispose();
            throw;
        }
    }

    private static List<ReferenceFeatures> References(IReadOnlyList<FeatureSpace> spaces)
    {
        FashionMnist.EnsureInstalled();
        return ProgressView.Run("reference features (Fashion-MNIST test split)", spaces.Count, p =>
        {
            using var test = FashionMnist.Load(FashionMnistSplit.Test);
            return spaces.Select((space, i) =>
            {
                var r = ReferenceFeatures.Of(space, test.Images);
                p.Report((i + 1, space.Name));
                return r;
            }).ToList();
        });
    }

    /// <summary>The resolved points, in the order given.</summary>
    public IReadOnlyList<StudyPoint> Points { get; private set; } = [];

    /// <summary>Samples and scores every point with a progress bar per point.</summary>
    public IReadOnlyList<StudyResult> Measure(CancellationToken cancel) => Measure(Points, cancel);

    /// <summary>Samples and scores <paramref name="points"/> (resolved here or added to them), with progress: a bar on a
    /// terminal, a line every few seconds in a log.</summary>
    public IReadOnlyList<StudyResult> Measure(IReadOnlyList<StudyPoint> points, CancellationToken cancel)
    {
        long total = (long)points.Count * Study.Samples;
        return ProgressView.Run("sampling and scoring", total, p =>
        {
            var done = new Dictionary<string, long>();
            return Study.Measure(points, new Reporter<(string Point, long Samples)>(x =>
            {
                done[x.Point] = x.Samples;
                p.Report((done.Values.Sum(), x.Point));
            }), cancel);
        });
    }

    /// <summary>Makes (or finds) the samples of <paramref name="points"/> and scores them, keeping both in the store
    /// (<see cref="QualityStore"/>): everything a study does that needs no idle machine.</summary>
    public void SampleAndScore(IReadOnlyList<StudyPoint> points, CancellationToken cancel)
    {
        long total = (long)points.Count * Study.Samples;
        ProgressView.Run("sampling and scoring", total, p =>
        {
            long before = 0;
            foreach (var point in points)
            {
                var progress = new Reporter<(string Point, long Samples)>(x => p.Report((before + x.Samples, x.Point)));
                Study.Score(point, progress, cancel);
                Study.Forget(point);
                before += Study.Samples;
            }
            return 0;
        });
    }

    /// <summary>Times the points (or reads the saved timings) with a target of <paramref name="timingBatch"/> images.</summary>
    public IReadOnlyList<StudyResult> Time(IReadOnlyList<StudyResult> results, int timingBatch, int repeats, string path, CancellationToken cancel)
    {
        var targets = new List<BenchTargets.Target>();
        try
        {
            Console.WriteLine($"timing {results.Count} configurations side by side ({repeats} rounds, {timingBatch} images per run; kept in {path})");
            return Study.Time(results, solver =>
            {
                var t = BenchTargets.Open(ModelPath, solver, Study.Guidance, timingBatch, null, Load);
                targets.Add(t);
                return t;
            }, repeats, path, new Progress<string>(s => { }), cancel);
        }
        finally
        {
            foreach (var t in targets) t.Dispose();
        }
    }

    public void Dispose()
    {
        for (int i = _owned.Count - 1; i >= 0; i--) _owned[i].Dispose();
    }

    private sealed class Reporter<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
