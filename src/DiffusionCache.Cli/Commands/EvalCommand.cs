using System.CommandLine;
using System.Diagnostics;
using DiffusionCache.Cli.Reporting;
using DiffusionCache.Caching;
using DiffusionCache.Data;
using DiffusionCache.Evaluation;
using DiffusionCache.Formats;
using DiffusionCache.Pipelines;
using DiffusionCache.Sharding;

namespace DiffusionCache.Cli.Commands;

/// <summary><c>diffcache eval</c>: FID and KID in two independent metric networks' feature spaces and class accuracy
/// of generated samples, with bootstrap intervals and paired comparisons against the first configuration, next to
/// the floors that say what "good" means here.</summary>
internal static class EvalCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "class-conditional pipeline folder", DefaultValueFactory = _ => TrainCommand.DefaultModel };
        var classifier = new Option<string>("--classifier") { Description = "metric network folder (the first feature space and the class accuracy)", DefaultValueFactory = _ => ClassifierFolder.DefaultPath };
        var secondClassifier = new Option<string>("--second-classifier") { Description = "second metric network folder, an independent feature space ('none': measure in the first space only)", DefaultValueFactory = _ => ClassifierFolder.SecondDefaultPath };
        var solver = new Option<string>("--solver") { Description = "ddim, ddpm, plms, dpm++ or euler", DefaultValueFactory = _ => "ddim" };
        var steps = new Option<int>("--steps") { Description = "denoising steps", DefaultValueFactory = _ => 50 };
        var guidance = new Option<double>("--guidance") { Description = "classifier-free guidance scale", DefaultValueFactory = _ => 4.0 };
        var samples = new Option<int>("--samples") { Description = "generated samples (balanced over classes)", DefaultValueFactory = _ => 2000 };
        var batch = new Option<int>("--batch") { Description = "samples per sampling batch (its index is its seed)", DefaultValueFactory = _ => 100 };
        var json = new Option<string?>("--json") { Description = "also write the figures as JSON (an object; with --configs, a list)" };
        var cache = new Option<string>("--cache") { Description = "cache policy: " + CacheSpec.Help, DefaultValueFactory = _ => "none" };
        var configs = new Option<string?>("--configs") { Description = "several runs sharing one set of floors: solver:steps:cache,... (overrides --solver/--steps/--cache)" };
        var referenceImages = new Option<int?>("--reference-images") { Description = "use only the first N images of each Fashion-MNIST split for the reference and floors (quick checks; default all)" };
        var shard = ShardOption.Create();
        var output = new Option<string?>("--out") { Description = "with --shard: the folder for the partial result" };
        var command = new Command("eval", "FID and KID in two feature spaces and class accuracy of generated samples, with intervals, paired verdicts and floors") { model, classifier, secondClassifier, solver, steps, guidance, samples, batch, json, cache, configs, referenceImages, shard, output };
        var runtime = new RuntimeOptions();
        runtime.AddTo(command);
        command.SetAction((parse, cancel) => Task.FromResult(CommandRunner.Run(() =>
        {
            var runs = parse.GetValue(configs) is string list
                ? list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(ParseRun).ToList()
                : [new Run(parse.GetValue(solver)!, parse.GetValue(steps), parse.GetValue(cache)!)];
            var sharding = new Sharding(ShardOption.Parse(parse.GetValue(shard)), parse.GetValue(output), parse.GetValue(referenceImages));
            var load = runtime.Apply(parse);
            string second = parse.GetValue(secondClassifier)!;
            return Execute(parse.GetValue(model)!, parse.GetValue(classifier)!, second == "none" ? null : second, runs, parse.GetValue(guidance), parse.GetValue(samples),
                parse.GetValue(batch), parse.GetValue(json), parse.GetValue(configs) is not null, sharding, load, cancel);
        })));
        return command;
    }

    private sealed record Run(string Solver, int Steps, string Cache);

    /// <summary>--shard with its output folder, and --reference-images.</summary>
    private sealed record Sharding(Shard? Shard, string? Out, int? ReferenceImages)
    {
        public void Validate(string? json)
        {
            if (Shard is not null && Out is null) throw new DiffusionCacheException("--shard needs --out FOLDER for the partial result");
            if (Shard is null && Out is not null) throw new DiffusionCacheException("--out is the folder of a shard's partial result: give --shard I/N too (or --json FILE)");
            if (Shard is not null && json is not null) throw new DiffusionCacheException("--json does not apply to a shard: 'diffcache merge' writes the results");
            if (ReferenceImages is < 2) throw new DiffusionCacheException("--reference-images must be at least 2");
        }
    }

    private static Run ParseRun(string text)
    {
        var parts = text.Split(':', 3);   // the cache part may hold colons itself (deepcache:5:0)
        if (parts.Length != 3 || !int.TryParse(parts[1], out int steps))
            throw new DiffusionCacheException($"--configs entry '{text}': expected solver:steps:cache, e.g. ddim:50:blockcache or ddim:50:deepcache:5");
        return new Run(parts[0], steps, parts[2]);
    }

    private static int Execute(string modelDir, string classifierDir, string? secondDir, IReadOnlyList<Run> runs, double guidance, int samples,
        int batch, string? json, bool asList, Sharding sharding, PipelineLoadOptions load, CancellationToken cancel)
    {
        sharding.Validate(json);
        if (samples < 2) throw new DiffusionCacheException("need at least 2 samples");
        if (batch < 1) throw new DiffusionCacheException("batch must be positive");
        long items = (long)runs.Count * ((samples + batch - 1) / batch);
        if (sharding.Shard is Shard s && s.Count > items)   // before loading anything
            throw new DiffusionCacheException($"{s.Count} shards for {items} sampling batches (configurations x batches): use at most {items} shards");
        var clock = Stopwatch.StartNew();
        using var classifier = ClassifierFolder.Load(DefaultPaths.Resolve(classifierDir));
        using var second = secondDir is null ? null : LoadSecond(secondDir);
        FeatureSpace[] spaces = second is null
            ? [new(EvalSettings.FirstSpace, classifier)]
            : [new(EvalSettings.FirstSpace, classifier), new(EvalSettings.SecondSpace, second)];
        // Only the generating pipeline follows --device/--dtype: the metric networks stay float32 on the CPU, so
        // FID, KID and accuracy are measured the same way whatever the samples were made with.
        using var pipeline = ClassConditionalPipeline.Load(DefaultPaths.Resolve(modelDir), load);
        // Every run's solver, step count and cache is checked before any work.
        var caches = runs.Select(r =>
        {
            using (var check = pipeline.CreateScheduler(r.Solver)) check.SetTimesteps(r.Steps);
            return CacheChoice.Resolve(r.Cache, pipeline, r.Solver, r.Steps);
        }).ToList();
        try
        {
            var settings = new EvalSettings
            {
                Model = modelDir, Classifier = classifierDir, SecondClassifier = secondDir, Guidance = guidance, Samples = samples, Batch = batch,
                ReferenceImages = sharding.ReferenceImages, AsList = asList,
                Configurations = [.. runs.Select((r, i) => new EvalConfiguration(r.Solver, r.Steps, r.Cache, caches[i].Name))],
            };
            if (sharding.Shard is Shard shard) return EvaluateShard(pipeline, spaces, settings, caches, shard, sharding.Out!, cancel);
            return Evaluate(pipeline, spaces, settings, caches, json, clock, cancel);
        }
        finally
        {
            foreach (var cache in caches) cache.Dispose();
        }
    }

    /// <summary>The second metric network; a folder that is not one is an error that says how to do without it.</summary>
    private static MetricNetwork LoadSecond(string dir)
    {
        try
        {
            return ClassifierFolder.LoadNetwork(DefaultPaths.Resolve(dir));
        }
        catch (DiffusionCacheException e)
        {
            throw new DiffusionCacheException($"--second-classifier: {e.Message}; or '--second-classifier none' to measure in one feature space", e);
        }
    }

    private static EvalFloors Floors(ClassConditionalPipeline pipeline, IReadOnlyList<FeatureSpace> spaces, int? referenceImages)
    {
        FashionMnist.EnsureInstalled();
        using var test = FashionMnist.Load(FashionMnistSplit.Test);
        using var train = FashionMnist.Load(FashionMnistSplit.Train);
        return EvalFloors.Compute(pipeline, spaces, test, train, referenceImages);
    }

    private static int EvaluateShard(ClassConditionalPipeline pipeline, IReadOnlyList<FeatureSpace> spaces, EvalSettings settings,
        IReadOnlyList<CacheChoice> caches, Shard shard, string output, CancellationToken cancel)
    {
        ShardedEvaluation.CheckShardCount(settings, shard.Count);
        if (ShardFiles.IsDone(output, EvalShard.Kind, shard, settings.Descriptor(shard.Count)))
        {
            ShardOption.SkipMessage(EvalShard.PathIn(output, shard));
            return 0;
        }
        var batches = settings.Batches();
        var (start, end) = shard.Range(batches.Count);
        long total = batches.Skip(start).Take(end - start).Sum(b => (long)b.Count);
        using var partial = ProgressView.Run($"eval shard {shard}", total, p => ShardedEvaluation.RunShard(pipeline, spaces, settings,
            [.. caches.Select(c => c.Create is null ? null : (Func<ICachePolicy?>)(() => c.Create()))], shard,
            () => Floors(pipeline, spaces, settings.ReferenceImages), new Progress(p), cancel));
        Console.WriteLine($"eval shard {shard}: sampling batches {start}..{end - 1} of {batches.Count}{(shard.Index == 0 ? " and the floors" : "")}; wrote {partial.Save(output)}");
        return 0;
    }

    private static int Evaluate(ClassConditionalPipeline pipeline, IReadOnlyList<FeatureSpace> spaces, EvalSettings settings,
        IReadOnlyList<CacheChoice> caches, string? json, Stopwatch clock, CancellationToken cancel)
    {
        using var floors = Floors(pipeline, spaces, settings.ReferenceImages);
        var rows = new List<EvalRow>();
        var batches = settings.Batches();
        for (int i = 0; i < settings.Configurations.Count; i++)
        {
            var (run, cache) = (settings.Configurations[i], caches[i]);
            var mine = batches.Where(b => b.Configuration == i).ToList();
            var results = new List<EvalBatchResult>();
            try
            {
                ProgressView.Run($"eval {run.Solver} {run.Steps} {run.Cache}", settings.Samples, p =>
                {
                    foreach (var b in mine)
                    {
                        results.Add(ShardedEvaluation.RunBatch(pipeline, spaces, settings, b, cache.Create, cancel));
                        p.Report((b.Start + b.Count, "samples"));
                    }
                    return 0;
                });
                // The same scoring as a merge's, so the single-process run is the merge of one shard.
                rows.Add(ShardedEvaluation.Score(settings, i, results, floors, i == 0 ? null : rows[0]));
            }
            finally
            {
                foreach (var r in results) r.Dispose();
            }
            EvalTable.WriteLine(rows[^1]);
            if (json is not null)   // written after every run, so a long job's finished runs are kept
                AtomicFile.WriteAllText(json, ShardedEvaluation.ToJson(rows, settings.AsList));
        }
        EvalTable.Write(rows);
        Console.WriteLine($"time: {clock.Elapsed.TotalSeconds:0} s");
        if (json is not null) Console.WriteLine($"wrote {json}");
        return 0;
    }

    private sealed class Progress(IProgress<(long Done, string Status)> inner) : IProgress<long>
    {
        public void Report(long value) => inner.Report((value, "samples"));
    }
}
