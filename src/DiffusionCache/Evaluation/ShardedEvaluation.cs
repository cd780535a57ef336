using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
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
    /// <summary>The metric network as named on the command line: the first feature space
    /// (<see cref="FirstSpace"/>) and the class accuracy.</summary>
    public required string Classifier { get; init; }
    /// <summary>The second metric network as named on the command line, an independent feature space
    /// (<see cref="SecondSpace"/>); null: measure in the first space only.</summary>
    public string? SecondClassifier { get; init; }
    /// <summary>How the intervals are drawn (default: 200 resamples, seed 0, 95 %). Every configuration resamples
    /// the same indices, which is what makes the comparisons with the first configuration paired.</summary>
    public BootstrapOptions Bootstrap { get; init; } = new();
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

    /// <summary>The name of the first feature space, <see cref="Classifier"/>'s.</summary>
    public const string FirstSpace = "classifier";
    /// <summary>The name of the second feature space, <see cref="SecondClassifier"/>'s (the shipped second network is
    /// a ResNet).</summary>
    public const string SecondSpace = "resnet";

    /// <summary>The feature spaces in order: <see cref="FirstSpace"/>, then <see cref="SecondSpace"/> when there is
    /// a <see cref="SecondClassifier"/>.</summary>
    [JsonIgnore]
    public IReadOnlyList<string> Spaces => SecondClassifier is null ? [FirstSpace] : [FirstSpace, SecondSpace];

    /// <summary>Checks counts.</summary>
    /// <exception cref="DiffusionCacheException">Fewer than 2 samples, a batch below 1, no configurations, fewer
    /// than 2 reference images, or unusable bootstrap options.</exception>
    public void Validate()
    {
        ArgumentNullException.ThrowIfNull(Bootstrap);
        Bootstrap.Validate();
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
        ["second_classifier"] = SecondClassifier ?? "none",
        ["bootstrap"] = string.Create(CultureInfo.InvariantCulture, $"{Bootstrap.Replicates}:{Bootstrap.Seed}:{Bootstrap.Level:R}"),
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

/// <summary>What "good" means in one feature space: FID and KID of the train split and of autoencoder
/// reconstructions of the test split, each against the test split.</summary>
/// <param name="Space">The feature space's name.</param>
/// <param name="FidTrain">FID of the train split vs the test split.</param>
/// <param name="KidTrain">KID of the train split's first <see cref="EvalFloors.KidSamples"/> images vs the test
/// split.</param>
/// <param name="FidAutoencoder">FID of the test split through the autoencoder vs the test split.</param>
/// <param name="KidAutoencoder">KID of the first <see cref="EvalFloors.KidSamples"/> reconstructions vs the test
/// split.</param>
public sealed record SpaceFloors(string Space, double FidTrain, double KidTrain, double FidAutoencoder, double KidAutoencoder);

/// <summary>The floors of an evaluation and the reference set FID and KID are measured against, in every feature
/// space: the test split's features, the floors of <see cref="SpaceFloors"/>, and the metric classifier's test
/// accuracy.</summary>
public sealed class EvalFloors : IDisposable
{
    /// <summary>KID is unbiased at any N, so its floors use only this many train images and reconstructions (the
    /// kernel over all pairs grows with N²).</summary>
    public const int KidSamples = 2000;

    /// <summary>The test split's features per feature space (the reference), in the order of
    /// <see cref="EvalSettings.Spaces"/>; owned.</summary>
    public required IReadOnlyList<ReferenceFeatures> References { get; init; }
    /// <summary>The floors per feature space, in the same order.</summary>
    public required IReadOnlyList<SpaceFloors> Spaces { get; init; }
    /// <summary>The metric classifier's accuracy on the test split.</summary>
    public required double ClassifierTestAccuracy { get; init; }

    /// <summary>FID of the train split vs the test split in the first feature space.</summary>
    public double FidTrain => Spaces[0].FidTrain;
    /// <summary>FID of autoencoder reconstructions of the test split in the first feature space.</summary>
    public double FidAutoencoder => Spaces[0].FidAutoencoder;

    /// <summary>Computes the floors from the splits (their first <paramref name="limit"/> images when given) in
    /// every feature space; the class accuracy is that of the first space's network.</summary>
    /// <param name="pipeline">The model whose autoencoder makes the reconstructions.</param>
    /// <param name="spaces">The feature spaces, in the order of <see cref="EvalSettings.Spaces"/>.</param>
    /// <param name="test">The test split (the reference).</param>
    /// <param name="train">The train split.</param>
    /// <param name="limit">Use only the first this many images of each split (null: all).</param>
    public static EvalFloors Compute(LatentDiffusionPipeline pipeline, IReadOnlyList<FeatureSpace> spaces, FashionMnist test,
        FashionMnist train, int? limit = null)
    {
        ArgumentNullException.ThrowIfNull(pipeline);
        ArgumentNullException.ThrowIfNull(spaces);
        ArgumentNullException.ThrowIfNull(test);
        ArgumentNullException.ThrowIfNull(train);
        if (spaces.Count == 0) throw new DiffusionCacheException("no feature space to compute the floors in");
        using var testImages = Head(test.Images, limit);
        using var testLabels = Head(test.Labels, limit);
        using var trainImages = Head(train.Images, limit);
        using var reconstructed = Reconstruct(pipeline, testImages);
        var references = new List<ReferenceFeatures>();
        var floors = new List<SpaceFloors>();
        try
        {
            foreach (var space in spaces)
            {
                ReferenceFeatures reference;
                using (var testFeatures = space.Features(testImages))
                    reference = ReferenceFeatures.Of(space.Name, testFeatures);
                references.Add(reference);
                using var trainFeatures = space.Features(trainImages);
                using var trainKid = Head(trainFeatures, KidSamples);
                using var recFeatures = space.Features(reconstructed);
                using var recKid = Head(recFeatures, KidSamples);
                floors.Add(new SpaceFloors(space.Name, reference.Fid(trainFeatures), reference.Kid(trainKid),
                    reference.Fid(recFeatures), reference.Kid(recKid)));
            }
            double accuracy = ClassifierTraining.Accuracy(spaces[0].Network, testImages, testLabels);
            return new EvalFloors { References = references, Spaces = floors, ClassifierTestAccuracy = accuracy };
        }
        catch
        {
            foreach (var r in references) r.Dispose();
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

    /// <summary>Frees the reference features.</summary>
    public void Dispose()
    {
        foreach (var r in References) r.Dispose();
    }
}

/// <summary>What one sampling batch contributes, per sample: its features in every feature space, whether the metric
/// classifier assigns it its requested label, and the sampling time.</summary>
public sealed class EvalBatchResult : IDisposable
{
    /// <summary>The work item.</summary>
    public required EvalBatch Batch { get; init; }
    /// <summary>Wall time of sampling the batch, in seconds (informational; not merged exactly).</summary>
    public required double SamplingSeconds { get; init; }
    /// <summary>The samples' features per feature space, in the order of <see cref="EvalSettings.Spaces"/>: float32
    /// [n, D_k] on the CPU; owned.</summary>
    public required IReadOnlyList<Tensor> Features { get; init; }
    /// <summary>Whether each sample was classified as its requested label: bool [n] on the CPU; owned. Kept per
    /// sample (not only as a count) because the bootstrap resamples samples.</summary>
    public required Tensor CorrectSamples { get; init; }

    /// <summary>Samples classified as their requested label.</summary>
    public long Correct
    {
        get
        {
            using var sum = CorrectSamples.sum();
            return sum.item<long>();
        }
    }

    /// <summary>Frees <see cref="Features"/> and <see cref="CorrectSamples"/>.</summary>
    public void Dispose()
    {
        foreach (var f in Features) f.Dispose();
        CorrectSamples.Dispose();
    }
}

/// <summary>FID and KID of one configuration in one feature space with their bootstrap intervals, next to that
/// space's floors (JSON snake_case; intervals as [lower, upper]).</summary>
/// <param name="Space">The feature space's name.</param>
/// <param name="Fid">FID against the test split.</param>
/// <param name="FidInterval">Its percentile bootstrap interval [lower, upper].</param>
/// <param name="Kid">Unbiased KID against the test split.</param>
/// <param name="KidInterval">Its percentile bootstrap interval [lower, upper].</param>
/// <param name="FidFloor">FID of the train split vs the test split.</param>
/// <param name="KidFloor">KID of the train split vs the test split.</param>
/// <param name="FidFloorAutoencoder">FID of autoencoder reconstructions of the test split.</param>
/// <param name="KidFloorAutoencoder">KID of autoencoder reconstructions of the test split.</param>
public sealed record EvalSpaceRow(string Space, double Fid, IReadOnlyList<double> FidInterval, double Kid, IReadOnlyList<double> KidInterval,
    double FidFloor, double KidFloor, double FidFloorAutoencoder, double KidFloorAutoencoder)
{
    /// <summary>FID with its interval.</summary>
    [JsonIgnore] public Interval FidWithInterval => new(Fid, FidInterval[0], FidInterval[1]);
    /// <summary>KID with its interval.</summary>
    [JsonIgnore] public Interval KidWithInterval => new(Kid, KidInterval[0], KidInterval[1]);
}

/// <summary>One paired difference of a configuration minus the first configuration (JSON snake_case).</summary>
/// <param name="Space">The feature space's name.</param>
/// <param name="Metric">"FID" or "KID".</param>
/// <param name="Difference">This configuration's value minus the first's.</param>
/// <param name="Interval">The percentile interval of the paired replicates' differences [lower, upper].</param>
/// <param name="Verdict">Whom it favours (<see cref="Evaluation.Verdict"/>: FirstBetter means this configuration).</param>
public sealed record EvalDifference(string Space, string Metric, double Difference, IReadOnlyList<double> Interval, string Verdict);

/// <summary>A configuration compared with the first one on the same seeds and resamples
/// (<see cref="SampleQuality.Compare"/>; JSON snake_case).</summary>
/// <param name="First">The first configuration's name.</param>
/// <param name="Verdict">The overall verdict by FID and KID in every space (<see cref="Evaluation.Verdict"/>;
/// FirstBetter means this configuration).</param>
/// <param name="Summary">The one-line verdict (<see cref="QualityComparison.Describe"/>).</param>
/// <param name="ClassAccuracyDifference">This configuration's class accuracy minus the first's.</param>
/// <param name="ClassAccuracyDifferenceInterval">Its paired percentile interval [lower, upper].</param>
/// <param name="Differences">FID and KID differences per feature space.</param>
public sealed record EvalComparison(string First, string Verdict, string Summary, double ClassAccuracyDifference,
    IReadOnlyList<double> ClassAccuracyDifferenceInterval, IReadOnlyList<EvalDifference> Differences);

/// <summary>A row of an evaluation's results: one configuration's figures next to the floors (the JSON
/// <c>diffcache eval --json</c> writes, snake_case). The flat fields are those of the one-space output (FID in the
/// first feature space), so older readers keep working; <see cref="Spaces"/> has every space.</summary>
/// <param name="Model">The model as named.</param>
/// <param name="Solver">Solver name.</param>
/// <param name="Steps">Denoising steps.</param>
/// <param name="Guidance">Guidance scale.</param>
/// <param name="Samples">Samples evaluated.</param>
/// <param name="Batch">Samples per sampling batch.</param>
/// <param name="Cache">The resolved cache setting.</param>
/// <param name="ClassAccuracy">Fraction of samples classified as their requested label.</param>
/// <param name="Fid">FID in the first feature space (the metric classifier's).</param>
/// <param name="FidFloor">FID of the train split vs the test split (first space).</param>
/// <param name="FidFloorAutoencoder">FID of autoencoder reconstructions of the test split (first space).</param>
/// <param name="ClassifierTestAccuracy">The classifier's test accuracy.</param>
/// <param name="SamplingSeconds">Sampling wall time, summed over batches.</param>
public sealed record EvalRow(string Model, string Solver, int Steps, double Guidance, int Samples, int Batch, string Cache,
    double ClassAccuracy, double Fid, double FidFloor, double FidFloorAutoencoder, double ClassifierTestAccuracy, double SamplingSeconds)
{
    /// <summary>The Wilson score interval of <see cref="ClassAccuracy"/> [lower, upper].</summary>
    public IReadOnlyList<double> ClassAccuracyInterval { get; init; } = [];
    /// <summary>How the intervals were drawn.</summary>
    public BootstrapOptions? Bootstrap { get; init; }
    /// <summary>FID and KID with intervals and floors, per feature space.</summary>
    public IReadOnlyList<EvalSpaceRow> Spaces { get; init; } = [];
    /// <summary>The paired comparison with the first configuration (null for the first).</summary>
    public EvalComparison? VersusFirst { get; init; }

    /// <summary>The full report with its bootstrap replicates, which paired comparisons need (not written).</summary>
    [JsonIgnore] public QualityReport? Quality { get; init; }

    /// <summary>How tables and verdicts name the configuration: "ddim, 50 steps, guidance 4, no cache".</summary>
    [JsonIgnore] public string Name => string.Create(CultureInfo.InvariantCulture, $"{Solver}, {Steps} steps, guidance {Guidance}, {Cache}");

    /// <summary><see cref="ClassAccuracy"/> with its interval.</summary>
    [JsonIgnore] public Interval ClassAccuracyWithInterval =>
        ClassAccuracyInterval.Count == 2 ? new(ClassAccuracy, ClassAccuracyInterval[0], ClassAccuracyInterval[1]) : new(ClassAccuracy, ClassAccuracy, ClassAccuracy);
}

/// <summary>
/// A partial evaluation: the batches of one shard (per-sample features in every feature space and correctness) and,
/// in shard 0, the floors with the reference features. <c>eval.shard-IIII-of-NNNN.json</c> (run descriptor, counts,
/// floors) beside <c>.safetensors</c> (<c>features.SPACE.C.B</c> float32 [n, D], <c>correct.C.B</c> bool [n],
/// <c>reference.SPACE</c> float32 [M, D]); the JSON is written last.
/// </summary>
public sealed class EvalShard : IDisposable
{
    /// <summary>The kind recorded in the partial file's header.</summary>
    public const string Kind = "eval";

    /// <summary>Which share of the work items this holds.</summary>
    public required Shard Shard { get; init; }
    /// <summary>The run.</summary>
    public required EvalSettings Settings { get; init; }
    /// <summary>The floors and reference features (shard 0 only); owned.</summary>
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
        var spaces = Settings.Spaces;
        var tensors = new List<KeyValuePair<string, Tensor>>();
        // The reference features as float32: the networks' own output, so the float64 copy ReferenceFeatures makes
        // of them is rebuilt bit for bit on load and the merge scores against exactly the same reference.
        var references = new List<Tensor>();
        try
        {
            foreach (var r in Results)
            {
                for (int k = 0; k < spaces.Count; k++)
                    tensors.Add(new($"features.{spaces[k]}.{r.Batch.Configuration}.{r.Batch.Index}", r.Features[k]));
                tensors.Add(new($"correct.{r.Batch.Configuration}.{r.Batch.Index}", r.CorrectSamples));
            }
            if (Floors is not null)
                foreach (var reference in Floors.References)
                {
                    references.Add(reference.Features.to(ScalarType.Float32, CPU));
                    tensors.Add(new($"reference.{reference.Space}", references[^1]));
                }
            SafetensorsWriter.Write(TensorsPath(path), tensors);
        }
        finally
        {
            foreach (var t in references) t.Dispose();
        }
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
                writer.WriteNumber("classifier_test_accuracy", Floors.ClassifierTestAccuracy);
                writer.WriteNumber("reference_count", Floors.References[0].Features.shape[0]);
                writer.WritePropertyName("spaces");
                JsonSerializer.Serialize(writer, Floors.Spaces, Json);
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
    /// <exception cref="DiffusionCacheException">Missing files, not an eval shard, batches that are not this
    /// shard's share, or tensors missing or of the wrong shape.</exception>
    public static EvalShard Load(string path)
    {
        var header = ShardFiles.ReadHeader(path);
        if (header.Kind != Kind) throw new DiffusionCacheException($"{path}: a {header.Kind} shard, expected an {Kind} shard");
        string tensorsPath = TensorsPath(path);
        if (!File.Exists(tensorsPath)) throw new DiffusionCacheException($"{tensorsPath}: the shard's features are missing");
        using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
        var root = doc.RootElement;
        var results = new List<EvalBatchResult>();
        var references = new List<ReferenceFeatures>();
        try
        {
            var settings = root.GetProperty("settings").Deserialize<EvalSettings>(Json) ?? throw new DiffusionCacheException("'settings' is null");
            if (ShardFiles.Mismatch(settings.Descriptor(header.Shard.Count), header.Run) is string diff)
                throw new DiffusionCacheException($"settings and run descriptor disagree ({diff})");
            var spaces = settings.Spaces;
            var all = settings.Batches();
            var (start, end) = header.Shard.Range(all.Count);
            using var file = SafetensorsFile.Open(tensorsPath);
            foreach (var b in root.GetProperty("batches").EnumerateArray())
            {
                var batch = new EvalBatch(b.GetProperty("configuration").GetInt32(), b.GetProperty("index").GetInt32(),
                    b.GetProperty("start").GetInt32(), b.GetProperty("count").GetInt32());
                if (results.Count >= end - start || all[start + results.Count] != batch)
                    throw new DiffusionCacheException($"batch {batch.Index} of configuration {batch.Configuration} is not shard {header.Shard}'s next work item");
                var result = LoadBatch(file, spaces, batch, b.GetProperty("sampling_seconds").GetDouble());
                results.Add(result);
                if (result.Correct != b.GetProperty("correct").GetInt64())
                    throw new DiffusionCacheException($"batch {batch.Index} of configuration {batch.Configuration}: the correct count disagrees with the per-sample record");
            }
            if (results.Count != end - start) throw new DiffusionCacheException($"{results.Count} batches, expected {end - start}");
            EvalFloors? floors = null;
            if (root.TryGetProperty("floors", out var f))
            {
                var floorSpaces = f.GetProperty("spaces").Deserialize<List<SpaceFloors>>(Json) ?? throw new DiffusionCacheException("'floors.spaces' is null");
                if (!floorSpaces.Select(s => s.Space).SequenceEqual(spaces))
                    throw new DiffusionCacheException($"floors in [{string.Join(", ", floorSpaces.Select(s => s.Space))}], expected [{string.Join(", ", spaces)}]");
                long count = f.GetProperty("reference_count").GetInt64();
                foreach (var space in spaces)
                {
                    using var features = file.Load($"reference.{space}");
                    if (features.dim() != 2 || features.shape[0] != count || features.dtype != ScalarType.Float32)
                        throw new DiffusionCacheException($"reference.{space} is not float32 [{count}, D]");
                    references.Add(ReferenceFeatures.Of(space, features));
                }
                floors = new EvalFloors
                {
                    References = references, Spaces = floorSpaces, ClassifierTestAccuracy = f.GetProperty("classifier_test_accuracy").GetDouble(),
                };
            }
            if ((floors is null) == (header.Shard.Index == 0))
                throw new DiffusionCacheException(header.Shard.Index == 0 ? "shard 0 must hold the floors" : "only shard 0 holds the floors");
            return new EvalShard { Shard = header.Shard, Settings = settings, Floors = floors, Results = results };
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or DiffusionCacheException)
        {
            foreach (var r in results) r.Dispose();
            foreach (var r in references) r.Dispose();
            throw new DiffusionCacheException($"{path}: not a valid partial evaluation ({e.Message})", e);
        }
    }

    private static EvalBatchResult LoadBatch(SafetensorsFile file, IReadOnlyList<string> spaces, EvalBatch batch, double seconds)
    {
        var features = new List<Tensor>();
        Tensor? correct = null;
        try
        {
            foreach (var space in spaces)
            {
                features.Add(file.Load($"features.{space}.{batch.Configuration}.{batch.Index}"));
                if (features[^1].dim() != 2 || features[^1].shape[0] != batch.Count)
                    throw new DiffusionCacheException($"{space} features of batch {batch.Index} of configuration {batch.Configuration} are not [{batch.Count}, D]");
            }
            correct = file.Load($"correct.{batch.Configuration}.{batch.Index}");
            if (correct.dtype != ScalarType.Bool || correct.dim() != 1 || correct.shape[0] != batch.Count)
                throw new DiffusionCacheException($"correct.{batch.Configuration}.{batch.Index} is not bool [{batch.Count}]");
            return new EvalBatchResult { Batch = batch, SamplingSeconds = seconds, Features = features, CorrectSamples = correct };
        }
        catch
        {
            foreach (var t in features) t.Dispose();
            correct?.Dispose();
            throw;
        }
    }

    /// <summary>Frees the features and the reference features.</summary>
    public void Dispose()
    {
        foreach (var r in Results) r.Dispose();
        Floors?.Dispose();
    }
}

/// <summary>
/// Evaluation split into work items that merge exactly: each sampling batch (seeded by its index) yields its
/// samples' features in every feature space and whether each was classified as its label; the figures of a
/// configuration (<see cref="SampleQuality.Score"/>: FID and KID with bootstrap intervals, class accuracy with its
/// Wilson interval) are computed from its batches' per-sample data concatenated in batch order, by the same code in
/// a single-process run and in a merge, and every later configuration is compared with the first.
/// </summary>
public static class ShardedEvaluation
{
    /// <summary>Samples one batch and measures it in every feature space.</summary>
    /// <param name="pipeline">The class-conditional model.</param>
    /// <param name="spaces">The feature spaces, named and ordered as <see cref="EvalSettings.Spaces"/>; the first
    /// space's network also gives the class accuracy.</param>
    /// <param name="settings">The run.</param>
    /// <param name="batch">The work item.</param>
    /// <param name="policy">Makes a fresh cache policy for the batch (null or returning null: uncached).</param>
    /// <param name="cancel">Checked between steps.</param>
    /// <exception cref="DiffusionCacheException">The spaces are not the settings'.</exception>
    public static EvalBatchResult RunBatch(ClassConditionalPipeline pipeline, IReadOnlyList<FeatureSpace> spaces, EvalSettings settings,
        EvalBatch batch, Func<ICachePolicy?>? policy, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(pipeline);
        ArgumentNullException.ThrowIfNull(settings);
        CheckSpaces(settings, spaces);
        var config = settings.Configurations[batch.Configuration];
        var ids = Enumerable.Range(batch.Start, batch.Count).Select(i => (long)(i % pipeline.NumLabels)).ToArray();
        var clock = Stopwatch.StartNew();
        using var scheduler = pipeline.CreateScheduler(config.Solver);
        using var cache = policy?.Invoke();
        using var generated = pipeline.Generate(scheduler, ids, seed: batch.Index, config.Steps, settings.Guidance, cache, cancel: cancel);
        clock.Stop();
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        // Each metric network keeps its own type and device (float32 on the CPU by default), whatever the pipeline runs in.
        var features = new List<Tensor>();
        foreach (var space in spaces)
        {
            var images = generated.to(ScalarType.Float32, space.Network.parameters().First().device);
            features.Add(space.Features(images).to(ScalarType.Float32).cpu().MoveToOuterDisposeScope());
        }
        var first = generated.to(ScalarType.Float32, spaces[0].Network.parameters().First().device);
        var labels = tensor(ids, device: first.device);
        var correct = SampleQuality.Correct(spaces[0].Network, first, labels).cpu().MoveToOuterDisposeScope();
        return new EvalBatchResult { Batch = batch, SamplingSeconds = clock.Elapsed.TotalSeconds, Features = features, CorrectSamples = correct };
    }

    private static void CheckSpaces(EvalSettings settings, IReadOnlyList<FeatureSpace> spaces)
    {
        ArgumentNullException.ThrowIfNull(spaces);
        if (!spaces.Select(s => s.Name).SequenceEqual(settings.Spaces))
            throw new DiffusionCacheException($"feature spaces [{string.Join(", ", spaces.Select(s => s.Name))}] given, the run measures in [{string.Join(", ", settings.Spaces)}]");
    }

    /// <summary>Runs a shard's work items (and, for shard 0, the floors).</summary>
    /// <param name="pipeline">The class-conditional model.</param>
    /// <param name="spaces">The feature spaces, as <see cref="RunBatch"/> takes them.</param>
    /// <param name="settings">The run.</param>
    /// <param name="policies">Per configuration, a factory of fresh cache policies (null: uncached).</param>
    /// <param name="shard">Which share; <see cref="Shard.Whole"/> for all.</param>
    /// <param name="floors">Computes the floors; called by shard 0 only.</param>
    /// <param name="progress">Told the number of samples done in this shard; optional.</param>
    /// <param name="cancel">Checked between steps.</param>
    /// <exception cref="DiffusionCacheException">More shards than batches, or bad settings.</exception>
    public static EvalShard RunShard(ClassConditionalPipeline pipeline, IReadOnlyList<FeatureSpace> spaces, EvalSettings settings,
        IReadOnlyList<Func<ICachePolicy?>?> policies, Shard shard, Func<EvalFloors> floors, IProgress<long>? progress = null,
        CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(policies);
        ArgumentNullException.ThrowIfNull(floors);
        CheckSpaces(settings, spaces);
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
                results.Add(RunBatch(pipeline, spaces, settings, all[i], policies[all[i].Configuration], cancel));
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

    /// <summary>One configuration's figures from its batches (all of them, in batch order): a
    /// <see cref="QualityReport"/> in every feature space with the floors, and, given the first configuration's row,
    /// the paired comparison with it.</summary>
    /// <param name="settings">The run.</param>
    /// <param name="configuration">Index of the configuration.</param>
    /// <param name="batches">Its batches, in order.</param>
    /// <param name="floors">The floors and reference features.</param>
    /// <param name="first">The first configuration's row, to compare with (null for the first itself).</param>
    /// <exception cref="DiffusionCacheException">The batches are not exactly the configuration's, in order, or the
    /// floors are in other feature spaces.</exception>
    public static EvalRow Score(EvalSettings settings, int configuration, IReadOnlyList<EvalBatchResult> batches, EvalFloors floors,
        EvalRow? first = null)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(batches);
        ArgumentNullException.ThrowIfNull(floors);
        var expected = settings.Batches().Where(b => b.Configuration == configuration).ToList();
        if (!batches.Select(b => b.Batch).SequenceEqual(expected))
            throw new DiffusionCacheException($"configuration {configuration}: batches missing or out of order");
        var spaces = settings.Spaces;
        if (!floors.References.Select(r => r.Space).SequenceEqual(spaces) || !floors.Spaces.Select(s => s.Space).SequenceEqual(spaces))
            throw new DiffusionCacheException($"the floors are not in the run's feature spaces [{string.Join(", ", spaces)}]");
        if (batches.Any(b => b.Features.Count != spaces.Count))
            throw new DiffusionCacheException($"configuration {configuration}: a batch without features in every feature space");
        var config = settings.Configurations[configuration];
        QualityReport report;
        var features = new List<Tensor>();
        try
        {
            for (int k = 0; k < spaces.Count; k++) features.Add(cat(batches.Select(b => b.Features[k]).ToList()));
            using var correct = cat(batches.Select(b => b.CorrectSamples).ToList());
            report = SampleQuality.Score(floors.References, features, correct, settings.Bootstrap);
        }
        finally
        {
            foreach (var f in features) f.Dispose();
        }
        var row = new EvalRow(settings.Model, config.Solver, config.Steps, settings.Guidance, settings.Samples, settings.Batch, config.CacheName,
            report.ClassAccuracy.Estimate, report.Spaces[0].Fid.Estimate, floors.FidTrain, floors.FidAutoencoder, floors.ClassifierTestAccuracy,
            batches.Sum(b => b.SamplingSeconds))
        {
            ClassAccuracyInterval = Bounds(report.ClassAccuracy),
            Bootstrap = settings.Bootstrap,
            Spaces = [.. report.Spaces.Select((s, k) => new EvalSpaceRow(s.Space, s.Fid.Estimate, Bounds(s.Fid), s.Kid.Estimate, Bounds(s.Kid),
                floors.Spaces[k].FidTrain, floors.Spaces[k].KidTrain, floors.Spaces[k].FidAutoencoder, floors.Spaces[k].KidAutoencoder))],
            Quality = report,
        };
        return first is null ? row : row with { VersusFirst = Versus(row, first) };
    }

    /// <summary><paramref name="row"/> compared with <paramref name="first"/> on the same seeds and resamples
    /// (<see cref="SampleQuality.Compare"/>): differences row - first with their paired intervals and the one-line
    /// verdict.</summary>
    /// <exception cref="DiffusionCacheException">A row without its report (read back from JSON), or reports that
    /// cannot be paired.</exception>
    public static EvalComparison Versus(EvalRow row, EvalRow first)
    {
        ArgumentNullException.ThrowIfNull(row);
        ArgumentNullException.ThrowIfNull(first);
        if (row.Quality is null || first.Quality is null)
            throw new DiffusionCacheException("a paired comparison needs the rows' quality reports (as Score makes them)");
        var comparison = SampleQuality.Compare(row.Quality, first.Quality);
        return new EvalComparison(first.Name, comparison.Verdict.ToString(), comparison.Describe(row.Name, first.Name, row.Quality.Bootstrap.Level),
            comparison.ClassAccuracy.Estimate, Bounds(comparison.ClassAccuracy),
            [.. comparison.Differences.Select(d => new EvalDifference(d.Space, d.Metric, d.Difference.Estimate, Bounds(d.Difference), d.Verdict.ToString()))]);
    }

    private static double[] Bounds(Interval i) => [i.Lower, i.Upper];

    /// <summary>The rows of a complete set of shards of one run (any order), exactly as the single-process run
    /// computes them (every later configuration compared with the first).</summary>
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
        var rows = new List<EvalRow>();
        for (int c = 0; c < settings.Configurations.Count; c++)
            rows.Add(Score(settings, c, [.. results.Where(r => r.Batch.Configuration == c)], floors, c == 0 ? null : rows[0]));
        return rows;
    }

    /// <summary>The results as <c>diffcache eval --json</c> writes them: one object, or a list when
    /// <see cref="EvalSettings.AsList"/>.</summary>
    public static string ToJson(IReadOnlyList<EvalRow> rows, bool asList)
    {
        ArgumentNullException.ThrowIfNull(rows);
        // An interval can be NaN when every resample leaves it undefined (tiny N): written as "NaN" rather than
        // failing after the sampling is done.
        var options = new JsonSerializerOptions
        {
            WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
            NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        };
        return asList ? JsonSerializer.Serialize(rows, options) : JsonSerializer.Serialize(rows[0], options);
    }
}
