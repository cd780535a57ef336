using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using DiffusionCache.Caching;
using DiffusionCache.Data;
using DiffusionCache.Formats;
using DiffusionCache.Formats.Safetensors;
using DiffusionCache.Pipelines;
using DiffusionCache.Sharding;
using DiffusionCache.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Evaluation;

/// <summary>One configuration of an evaluation: solver, step count and cache setting.</summary>
/// <param name="Solver">The solver name (ddim, ddpm, plms, dpm++, euler).</param>
/// <param name="Steps">Denoising steps.</param>
/// <param name="Cache">The cache setting as given (<c>none</c>, <c>blockcache</c>, <c>deepcache:3</c>, ...).</param>
/// <param name="CacheName">The cache setting as resolved and reported (e.g. which schedule file).</param>
public sealed record EvalConfiguration(string Solver, int Steps, string Cache, string CacheName);

/// <summary>One work item of an evaluation: sampling batch <see cref="Index"/> of configuration
/// <see cref="Configuration"/>, samples <see cref="Start"/>..Start+Count-1, seeded by its index.</summary>
/// <param name="Configuration">Index into <see cref="EvalSettings.Configurations"/>.</param>
/// <param name="Index">The batch index, which is also its noise seed.</param>
/// <param name="Start">The first sample of the batch; sample i asks for label i mod classes.</param>
/// <param name="Count">Samples in the batch.</param>
public readonly record struct EvalBatch(int Configuration, int Index, int Start, int Count);

/// <summary>What an evaluation run is: the model and metric network, guidance, sample count, batch size, the
/// configurations and how much of the reference data the floors use.</summary>
public sealed record EvalSettings
{
    /// <summary>The model as named on the command line (recorded in the results).</summary>
    public required string Model { get; init; }
    /// <summary>The metric network as named on the command line.</summary>
    public required string Classifier { get; init; }
    /// <summary>Classifier-free guidance scale.</summary>
    public required double Guidance { get; init; }
    /// <summary>Samples generated per configuration (balanced over classes); at least 2.</summary>
    public required int Samples { get; init; }
    /// <summary>Samples per sampling batch; batch b is seeded with b.</summary>
    public required int Batch { get; init; }
    /// <summary>Use only the first this many images of each Fashion-MNIST split for the reference statistics and
    /// floors (quick checks; null: all).</summary>
    public int? ReferenceImages { get; init; }
    /// <summary>The results are written as a list (several configurations were asked for) rather than one object.
    /// </summary>
    public bool AsList { get; init; }
    /// <summary>The configurations, in order.</summary>
    public required IReadOnlyList<EvalConfiguration> Configurations { get; init; }

    /// <summary>Checks counts.</summary>
    /// <exception cref="DiffusionCacheException">Fewer than 2 samples, a batch below 1, no configurations, or
    /// fewer than 2 reference images.</exception>
    public void Validate()
    {
        if (Samples < 2) throw new DiffusionCacheException("need at least 2 samples");
        if (Batch < 1) throw new DiffusionCacheException("batch must be positive");
        if (Configurations.Count == 0) throw new DiffusionCacheException("no configuration to evaluate");
        if (ReferenceImages is < 2) throw new DiffusionCacheException("--reference-images must be at least 2");
    }

    /// <summary>Every work item in canonical order: configuration by configuration, batch by batch.</summary>
    public IReadOnlyList<EvalBatch> Batches()
    {
        Validate();
        var batches = new List<EvalBatch>();
        for (int c = 0; c < Configurations.Count; c++)
            for (int start = 0, index = 0; start < Samples; start += Batch, index++)
                batches.Add(new EvalBatch(c, index, start, Math.Min(Batch, Samples - start)));
        return batches;
    }

    /// <summary>The run descriptor shards of one run share and a merge compares.</summary>
    /// <param name="shards">N, the run's shard count.</param>
    public IReadOnlyDictionary<string, string> Descriptor(int shards) => new SortedDictionary<string, string>(StringComparer.Ordinal)
    {
        ["model"] = Model,
        ["classifier"] = Classifier,
        ["guidance"] = Guidance.ToString("R", CultureInfo.InvariantCulture),
        ["samples"] = Samples.ToString(CultureInfo.InvariantCulture),
        ["batch"] = Batch.ToString(CultureInfo.InvariantCulture),
        ["reference_images"] = ReferenceImages?.ToString(CultureInfo.InvariantCulture) ?? "all",
        ["as_list"] = AsList ? "true" : "false",
        ["configurations"] = string.Join(",", Configurations.Select(c => string.Create(CultureInfo.InvariantCulture, $"{c.Solver}:{c.Steps}:{c.Cache}"))),
        ["cache_names"] = string.Join("|", Configurations.Select(c => c.CacheName)),
        ["shards"] = shards.ToString(CultureInfo.InvariantCulture),
    };
}

/// <summary>The floors of an evaluation and the reference statistics FID is measured against: FID of the train
/// split and of autoencoder reconstructions of the test split against the test split, and the classifier's test
/// accuracy.</summary>
public sealed class EvalFloors : IDisposable
{
    /// <summary>Feature statistics of the test split (the reference); owned.</summary>
    public required FeatureStatistics Reference { get; init; }
    /// <summary>FID of the train split vs the test split.</summary>
    public required double FidTrain { get; init; }
    /// <summary>FID of the test split through the autoencoder vs the test split.</summary>
    public required double FidAutoencoder { get; init; }
    /// <summary>The metric classifier's accuracy on the test split.</summary>
    public required double ClassifierTestAccuracy { get; init; }

    /// <summary>Computes the floors from the splits (their first <paramref name="limit"/> images when given).</summary>
    public static EvalFloors Compute(LatentDiffusionPipeline pipeline, FashionClassifier classifier, FashionMnist test,
        FashionMnist train, int? limit = null)
    {
        ArgumentNullException.ThrowIfNull(pipeline);
        ArgumentNullException.ThrowIfNull(classifier);
        ArgumentNullException.ThrowIfNull(test);
        ArgumentNullException.ThrowIfNull(train);
        using var testImages = Head(test.Images, limit);
        using var testLabels = Head(test.Labels, limit);
        using var trainImages = Head(train.Images, limit);
        using var testFeatures = SampleQuality.Features(classifier, testImages);
        var reference = FeatureStatistics.Of(testFeatures);
        try
        {
            double fidTrain, fidAutoencoder;
            using (var trainFeatures = SampleQuality.Features(classifier, trainImages))
            using (var trainStats = FeatureStatistics.Of(trainFeatures))
                fidTrain = trainStats.FrechetDistance(reference);
            using (var reconstructed = Reconstruct(pipeline, testImages))
            using (var recFeatures = SampleQuality.Features(classifier, reconstructed))
            using (var recStats = FeatureStatistics.Of(recFeatures))
                fidAutoencoder = recStats.FrechetDistance(reference);
            double accuracy = ClassifierTraining.Accuracy(classifier, testImages, testLabels);
            return new EvalFloors { Reference = reference, FidTrain = fidTrain, FidAutoencoder = fidAutoencoder, ClassifierTestAccuracy = accuracy };
        }
        catch
        {
            reference.Dispose();
            throw;
        }
    }

    private static Tensor Head(Tensor t, int? limit) => limit is int n && n < t.shape[0] ? t.narrow(0, 0, n) : t.alias();

    private static Tensor Reconstruct(LatentDiffusionPipeline pipeline, Tensor images)
    {
        using var noGrad = no_grad();
        var parts = new List<Tensor>();
        for (long i = 0; i < images.shape[0]; i += 500)
        {
            using var scope = NewDisposeScope();
            // In the autoencoder's type on its device; back as float32 where the images were (the metric's side).
            var weight = pipeline.Vae.parameters().First();
            using var posterior = pipeline.Vae.Encode(images.narrow(0, i, Math.Min(500, images.shape[0] - i)).to(weight.dtype, weight.device));
            parts.Add(pipeline.Vae.Decode(posterior.Mode()).to(ScalarType.Float32, images.device).clamp(-1, 1).MoveToOuterDisposeScope());
        }
        var all = cat(parts);
        foreach (var p in parts) p.Dispose();
        return all;
    }

    /// <summary>Frees the reference statistics.</summary>
    public void Dispose() => Reference.Dispose();
}

/// <summary>What one sampling batch contributes: its samples' classifier features (float32 [n, 256], CPU), how
/// many the classifier assigns to their requested label, and the sampling time.</summary>
public sealed class EvalBatchResult : IDisposable
{
    /// <summary>The work item.</summary>
    public required EvalBatch Batch { get; init; }
    /// <summary>Samples classified as their requested label.</summary>
    public required long Correct { get; init; }
    /// <summary>Wall time of sampling the batch, in seconds (informational; not merged exactly).</summary>
    public required double SamplingSeconds { get; init; }
    /// <summary>Penultimate classifier features of the batch's samples; owned.</summary>
    public required Tensor Features { get; init; }

    /// <summary>Frees <see cref="Features"/>.</summary>
    public void Dispose() => Features.Dispose();
}

/// <summary>A row of an evaluation's results: one configuration's figures next to the floors (the JSON
/// <c>diffcache eval --json</c> writes, snake_case).</summary>
/// <param name="Model">The model as named.</param>
/// <param name="Solver">Solver name.</param>
/// <param name="Steps">Denoising steps.</param>
/// <param name="Guidance">Guidance scale.</param>
/// <param name="Samples">Samples evaluated.</param>
/// <param name="Batch">Samples per sampling batch.</param>
/// <param name="Cache">The resolved cache setting.</param>
/// <param name="ClassAccuracy">Fraction of samples classified as their requested label.</param>
/// <param name="Fid">FID in the metric classifier's feature space.</param>
/// <param name="FidFloor">FID of the train split vs the test split.</param>
/// <param name="FidFloorAutoencoder">FID of autoencoder reconstructions of the test split.</param>
/// <param name="ClassifierTestAccuracy">The classifier's test accuracy.</param>
/// <param name="SamplingSeconds">Sampling wall time, summed over batches.</param>
public sealed record EvalRow(string Model, string Solver, int Steps, double Guidance, int Samples, int Batch, string Cache,
    double ClassAccuracy, double Fid, double FidFloor, double FidFloorAutoencoder, double ClassifierTestAccuracy, double SamplingSeconds);

/// <summary>
/// A partial evaluation: the batches of one shard (features, correct counts) and, in shard 0, the floors with the
/// reference statistics. <c>eval.shard-IIII-of-NNNN.json</c> (run descriptor, counts, floors) beside
/// <c>.safetensors</c> (features float32, reference moments float64); the JSON is written last.
/// </summary>
public sealed class EvalShard : IDisposable
{
    /// <summary>The kind recorded in the partial file's header.</summary>
    public const string Kind = "eval";

    /// <summary>Which share of the work items this holds.</summary>
    public required Shard Shard { get; init; }
    /// <summary>The run.</summary>
    public required EvalSettings Settings { get; init; }
    /// <summary>The floors and reference statistics (shard 0 only); owned.</summary>
    public EvalFloors? Floors { get; init; }
    /// <summary>This shard's batches in canonical order; owned.</summary>
    public required IReadOnlyList<EvalBatchResult> Results { get; init; }

    /// <summary>The partial JSON of <paramref name="shard"/> in <paramref name="folder"/>.</summary>
    public static string PathIn(string folder, Shard shard) => ShardFiles.PartialPath(folder, Kind, shard);

    private static string TensorsPath(string jsonPath) => Path.ChangeExtension(jsonPath, ".safetensors");

    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, WriteIndented = true };

    /// <summary>Writes the partial result to <paramref name="folder"/> (tensors first, then the JSON, each
    /// atomically) and returns the JSON's path.</summary>
    public string Save(string folder)
    {
        string path = PathIn(folder, Shard);
        Directory.CreateDirectory(folder);
        var tensors = new List<KeyValuePair<string, Tensor>>();
        foreach (var r in Results) tensors.Add(new($"features.{r.Batch.Configuration}.{r.Batch.Index}", r.Features));
        if (Floors is not null)
        {
            tensors.Add(new("reference.mean", Floors.Reference.Mean));
            tensors.Add(new("reference.covariance", Floors.Reference.Covariance));
        }
        SafetensorsWriter.Write(TensorsPath(path), tensors);
        AtomicFile.Write(path, stream =>
        {
            using var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
            writer.WriteStartObject();
            ShardFiles.WriteHeader(writer, Kind, Shard, Settings.Descriptor(Shard.Count));
            writer.WritePropertyName("settings");
            JsonSerializer.Serialize(writer, Settings, Json);
            if (Floors is not null)
            {
                writer.WriteStartObject("floors");
                writer.WriteNumber("fid_train", Floors.FidTrain);
                writer.WriteNumber("fid_autoencoder", Floors.FidAutoencoder);
                writer.WriteNumber("classifier_test_accuracy", Floors.ClassifierTestAccuracy);
                writer.WriteNumber("reference_count", Floors.Reference.Count);
                writer.WriteEndObject();
            }
            writer.WriteStartArray("batches");
            foreach (var r in Results)
            {
                writer.WriteStartObject();
                writer.WriteNumber("configuration", r.Batch.Configuration);
                writer.WriteNumber("index", r.Batch.Index);
                writer.WriteNumber("start", r.Batch.Start);
                writer.WriteNumber("count", r.Batch.Count);
                writer.WriteNumber("correct", r.Correct);
                writer.WriteNumber("sampling_seconds", r.SamplingSeconds);
                writer.WriteEndObject();
            }
            writer.WriteEndArray();
            writer.WriteEndObject();
        });
        return path;
    }

    /// <summary>Reads a partial evaluation; errors name the file.</summary>
    /// <exception cref="DiffusionCacheException">Missing files, not an eval shard, or batches that are not this
    /// shard's share.</exception>
    public static EvalShard Load(string path)
    {
        var header = ShardFiles.ReadHeader(path);
        if (header.Kind != Kind) throw new DiffusionCacheException($"{path}: a {header.Kind} shard, expected an {Kind} shard");
        string tensorsPath = TensorsPath(path);
        if (!File.Exists(tensorsPath)) throw new DiffusionCacheException($"{tensorsPath}: the shard's features are missing");
        using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
        var root = doc.RootElement;
        var results = new List<EvalBatchResult>();
        EvalFloors? floors = null;
        try
        {
            var settings = root.GetProperty("settings").Deserialize<EvalSettings>(Json) ?? throw new DiffusionCacheException("'settings' is null");
            if (ShardFiles.Mismatch(settings.Descriptor(header.Shard.Count), header.Run) is string diff)
                throw new DiffusionCacheException($"settings and run descriptor disagree ({diff})");
            var all = settings.Batches();
            var (start, end) = header.Shard.Range(all.Count);
            using var file = SafetensorsFile.Open(tensorsPath);
            foreach (var b in root.GetProperty("batches").EnumerateArray())
            {
                var batch = new EvalBatch(b.GetProperty("configuration").GetInt32(), b.GetProperty("index").GetInt32(),
                    b.GetProperty("start").GetInt32(), b.GetProperty("count").GetInt32());
                if (results.Count >= end - start || all[start + results.Count] != batch)
                    throw new DiffusionCacheException($"batch {batch.Index} of configuration {batch.Configuration} is not shard {header.Shard}'s next work item");
                var features = file.Load($"features.{batch.Configuration}.{batch.Index}");
                results.Add(new EvalBatchResult
                {
                    Batch = batch, Correct = b.GetProperty("correct").GetInt64(), SamplingSeconds = b.GetProperty("sampling_seconds").GetDouble(), Features = features,
                });
                if (features.dim() != 2 || features.shape[0] != batch.Count)
                    throw new DiffusionCacheException($"features of batch {batch.Index} of configuration {batch.Configuration} are not [{batch.Count}, D]");
            }
            if (results.Count != end - start) throw new DiffusionCacheException($"{results.Count} batches, expected {end - start}");
            if (root.TryGetProperty("floors", out var f))
            {
                var mean = file.Load("reference.mean");
                var cov = file.Load("reference.covariance");
                floors = new EvalFloors
                {
                    Reference = FeatureStatistics.FromMoments(mean, cov, f.GetProperty("reference_count").GetInt64()),
                    FidTrain = f.GetProperty("fid_train").GetDouble(),
                    FidAutoencoder = f.GetProperty("fid_autoencoder").GetDouble(),
                    ClassifierTestAccuracy = f.GetProperty("classifier_test_accuracy").GetDouble(),
                };
            }
            if ((floors is null) == (header.Shard.Index == 0))
                throw new DiffusionCacheException(header.Shard.Index == 0 ? "shard 0 must hold the floors" : "only shard 0 holds the floors");
            return new EvalShard { Shard = header.Shard, Settings = settings, Floors = floors, Results = results };
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or DiffusionCacheException)
        {
            foreach (var r in results) r.Dispose();
            floors?.Dispose();
            throw new DiffusionCacheException($"{path}: not a valid partial evaluation ({e.Message})", e);
        }
    }

    /// <summary>Frees the features and the reference statistics.</summary>
    public void Dispose()
    {
        foreach (var r in Results) r.Dispose();
        Floors?.Dispose();
    }
}

/// <summary>
/// Evaluation split into work items that merge exactly: each sampling batch (seeded by its index) yields its
/// samples' features and correct count; the figures of a configuration are computed from its batches' features
/// concatenated in batch order (<see cref="FeatureStatistics.Of(Tensor)"/>) and the summed counts, by the same code in a
/// single-process run and in a merge.
/// </summary>
public static class ShardedEvaluation
{
    /// <summary>Samples one batch and scores it with the metric network.</summary>
    /// <param name="pipeline">The class-conditional model.</param>
    /// <param name="classifier">The metric network.</param>
    /// <param name="settings">The run.</param>
    /// <param name="batch">The work item.</param>
    /// <param name="policy">Makes a fresh cache policy for the batch (null or returning null: uncached).</param>
    /// <param name="cancel">Checked between steps.</param>
    public static EvalBatchResult RunBatch(ClassConditionalPipeline pipeline, FashionClassifier classifier, EvalSettings settings,
        EvalBatch batch, Func<ICachePolicy?>? policy, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(pipeline);
        ArgumentNullException.ThrowIfNull(classifier);
        ArgumentNullException.ThrowIfNull(settings);
        var config = settings.Configurations[batch.Configuration];
        var ids = Enumerable.Range(batch.Start, batch.Count).Select(i => (long)(i % pipeline.NumLabels)).ToArray();
        var clock = Stopwatch.StartNew();
        using var scheduler = pipeline.CreateScheduler(config.Solver);
        using var cache = policy?.Invoke();
        using var generated = pipeline.Generate(scheduler, ids, seed: batch.Index, config.Steps, settings.Guidance, cache, cancel: cancel);
        clock.Stop();
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        // The metric network keeps its own type and device (float32 on the CPU by default), whatever the pipeline runs in.
        var images = generated.to(ScalarType.Float32, classifier.parameters().First().device);
        classifier.eval();
        var features = classifier.Features(images).to(ScalarType.Float32).cpu();
        using var labels = tensor(ids, device: images.device);
        long correct = (classifier.call(images).argmax(1) == labels).sum().item<long>();
        return new EvalBatchResult { Batch = batch, Correct = correct, SamplingSeconds = clock.Elapsed.TotalSeconds, Features = features.MoveToOuterDisposeScope() };
    }

    /// <summary>Runs a shard's work items (and, for shard 0, the floors).</summary>
    /// <param name="pipeline">The class-conditional model.</param>
    /// <param name="classifier">The metric network.</param>
    /// <param name="settings">The run.</param>
    /// <param name="policies">Per configuration, a factory of fresh cache policies (null: uncached).</param>
    /// <param name="shard">Which share; <see cref="Shard.Whole"/> for all.</param>
    /// <param name="floors">Computes the floors; called by shard 0 only.</param>
    /// <param name="progress">Told the number of samples done in this shard; optional.</param>
    /// <param name="cancel">Checked between steps.</param>
    /// <exception cref="DiffusionCacheException">More shards than batches, or bad settings.</exception>
    public static EvalShard RunShard(ClassConditionalPipeline pipeline, FashionClassifier classifier, EvalSettings settings,
        IReadOnlyList<Func<ICachePolicy?>?> policies, Shard shard, Func<EvalFloors> floors, IProgress<long>? progress = null,
        CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(policies);
        ArgumentNullException.ThrowIfNull(floors);
        var all = settings.Batches();
        CheckShardCount(settings, shard.Count);
        var (start, end) = shard.Range(all.Count);
        var results = new List<EvalBatchResult>();
        EvalFloors? computed = null;
        try
        {
            computed = shard.Index == 0 ? floors() : null;
            long done = 0;
            for (int i = start; i < end; i++)
            {
                cancel.ThrowIfCancellationRequested();
                results.Add(RunBatch(pipeline, classifier, settings, all[i], policies[all[i].Configuration], cancel));
                done += all[i].Count;
                progress?.Report(done);
            }
            return new EvalShard { Shard = shard, Settings = settings, Floors = computed, Results = results };
        }
        catch
        {
            foreach (var r in results) r.Dispose();
            computed?.Dispose();
            throw;
        }
    }

    /// <summary>Refuses more shards than work items.</summary>
    /// <exception cref="DiffusionCacheException"><paramref name="shards"/> exceeds the number of batches.</exception>
    public static void CheckShardCount(EvalSettings settings, int shards)
    {
        ArgumentNullException.ThrowIfNull(settings);
        int items = settings.Batches().Count;
        if (shards > items)
            throw new DiffusionCacheException($"{shards} shards for {items} sampling batches (configurations x batches): use at most {items} shards");
    }

    /// <summary>One configuration's figures from its batches (all of them, in batch order).</summary>
    /// <exception cref="DiffusionCacheException">The batches are not exactly the configuration's, in order.</exception>
    public static EvalRow Score(EvalSettings settings, int configuration, IReadOnlyList<EvalBatchResult> batches, EvalFloors floors)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(batches);
        ArgumentNullException.ThrowIfNull(floors);
        var expected = settings.Batches().Where(b => b.Configuration == configuration).ToList();
        if (!batches.Select(b => b.Batch).SequenceEqual(expected))
            throw new DiffusionCacheException($"configuration {configuration}: batches missing or out of order");
        var config = settings.Configurations[configuration];
        double fid;
        using (var features = cat(batches.Select(b => b.Features).ToList()))
        using (var stats = FeatureStatistics.Of(features))
            fid = stats.FrechetDistance(floors.Reference);
        long correct = batches.Sum(b => b.Correct);
        return new EvalRow(settings.Model, config.Solver, config.Steps, settings.Guidance, settings.Samples, settings.Batch, config.CacheName,
            (double)correct / settings.Samples, fid, floors.FidTrain, floors.FidAutoencoder, floors.ClassifierTestAccuracy,
            batches.Sum(b => b.SamplingSeconds));
    }

    /// <summary>The rows of a complete set of shards of one run (any order), exactly as the single-process run
    /// computes them.</summary>
    /// <exception cref="DiffusionCacheException">Shards of different runs (naming the mismatch), a missing or
    /// duplicated shard.</exception>
    public static IReadOnlyList<EvalRow> Merge(IReadOnlyList<EvalShard> shards)
    {
        ArgumentNullException.ThrowIfNull(shards);
        var headers = ShardFiles.RequireComplete([.. shards.Select(s => new ShardHeader(EvalShard.Kind, s.Shard, s.Settings.Descriptor(s.Shard.Count), $"shard {s.Shard}"))]);
        var ordered = headers.Select(h => shards.First(s => s.Shard == h.Shard)).ToList();
        var settings = ordered[0].Settings;
        var floors = ordered[0].Floors ?? throw new DiffusionCacheException("shard 0 holds no floors");
        var results = ordered.SelectMany(s => s.Results).ToList();
        return [.. Enumerable.Range(0, settings.Configurations.Count)
            .Select(c => Score(settings, c, [.. results.Where(r => r.Batch.Configuration == c)], floors))];
    }

    /// <summary>The results as <c>diffcache eval --json</c> writes them: one object, or a list when
    /// <see cref="EvalSettings.AsList"/>.</summary>
    public static string ToJson(IReadOnlyList<EvalRow> rows, bool asList)
    {
        ArgumentNullException.ThrowIfNull(rows);
        var options = new JsonSerializerOptions { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };
        return asList ? JsonSerializer.Serialize(rows, options) : JsonSerializer.Serialize(rows[0], options);
    }
}
