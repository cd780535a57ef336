using System.Text.Json;
using DiffusionCache.Evaluation;
using DiffusionCache.Sharding;
using DiffusionCache.Tests.TestSupport;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Evaluation;

/// <summary>The sharded evaluation on synthetic per-sample data (no sampling): shard files round-trip the features of
/// every space, the per-sample correctness and the reference features; merging any number of shards gives the
/// single-process rows exactly (KID, intervals and the paired verdict included); the verdict names the better
/// configuration.</summary>
public sealed class ShardedEvaluationTests
{
    private const int ClassifierDim = 6, ResNetDim = 4;

    private static EvalSettings Settings(bool second = true) => new()
    {
        Model = "models/fashion-ldm", Classifier = "models/fashion-classifier", SecondClassifier = second ? "models/fashion-resnet" : null,
        Guidance = 4, Samples = 7, Batch = 2, AsList = true, Bootstrap = new BootstrapOptions(Replicates: 50, Seed: 3),
        Configurations = [new("ddim", 2, "none", "no cache"), new("ddim", 2, "deepcache:2", "DeepCache uniform 1:2 branch 0")],
    };

    /// <summary>Every batch of the run: configuration 1 is configuration 0 (same seeds) shifted away from the
    /// reference, so it is worse in every space, paired sample by sample.</summary>
    private static List<EvalBatchResult> Results(EvalSettings settings)
    {
        var results = new List<EvalBatchResult>();
        foreach (var b in settings.Batches())
        {
            var generator = new Generator((ulong)(100 + b.Index));
            float shift = b.Configuration * 3f;
            var classifier = randn([b.Count, ClassifierDim], generator: generator) + shift;
            var resnet = randn([b.Count, ResNetDim], generator: generator) + shift;
            var correct = tensor(Enumerable.Range(b.Start, b.Count).Select(i => (i + b.Configuration) % 3 != 0).ToArray());
            results.Add(new EvalBatchResult
            {
                Batch = b, SamplingSeconds = 0.25 * (b.Index + 1),
                Features = settings.SecondClassifier is null ? [classifier] : [classifier, resnet], CorrectSamples = correct,
            });
            if (settings.SecondClassifier is null) resnet.Dispose();
        }
        return results;
    }

    private static EvalFloors Floors(EvalSettings settings)
    {
        var generator = new Generator(7);
        using var classifier = randn([40, ClassifierDim], generator: generator);
        using var resnet = randn([40, ResNetDim], generator: generator);
        var references = new List<ReferenceFeatures> { ReferenceFeatures.Of(EvalSettings.FirstSpace, classifier) };
        var spaces = new List<SpaceFloors> { new(EvalSettings.FirstSpace, 1.5, 0.002, 2.5, 0.003) };
        if (settings.SecondClassifier is not null)
        {
            references.Add(ReferenceFeatures.Of(EvalSettings.SecondSpace, resnet));
            spaces.Add(new(EvalSettings.SecondSpace, 3.5, 0.004, 4.5, 0.005));
        }
        return new EvalFloors { References = references, Spaces = spaces, ClassifierTestAccuracy = 0.9 };
    }

    /// <summary>What the single-process run computes: configuration by configuration, each later one compared with
    /// the first.</summary>
    private static List<EvalRow> Single(EvalSettings settings, IReadOnlyList<EvalBatchResult> results, EvalFloors floors)
    {
        var rows = new List<EvalRow>();
        for (int c = 0; c < settings.Configurations.Count; c++)
            rows.Add(ShardedEvaluation.Score(settings, c, [.. results.Where(r => r.Batch.Configuration == c)], floors, c == 0 ? null : rows[0]));
        return rows;
    }

    /// <summary>Writes the run as <paramref name="count"/> shards (shard 0 with the floors) and reads them back.</summary>
    private static List<EvalShard> SaveAndLoad(string folder, EvalSettings settings, IReadOnlyList<EvalBatchResult> results, EvalFloors floors, int count)
    {
        for (int i = 0; i < count; i++)
        {
            var shard = new Shard(i, count);
            var (start, end) = shard.Range(results.Count);
            // Not disposed: the results and floors belong to the caller.
            new EvalShard { Shard = shard, Settings = settings, Floors = i == 0 ? floors : null, Results = [.. results.Skip(start).Take(end - start)] }.Save(folder);
        }
        return [.. Enumerable.Range(0, count).Select(i => EvalShard.Load(EvalShard.PathIn(folder, new Shard(i, count))))];
    }

    private static bool Same(Tensor a, Tensor b) =>
        a.dtype == b.dtype && a.shape.SequenceEqual(b.shape) && a.equal(b).all().item<bool>();

    private static void Dispose(IEnumerable<IDisposable> items)
    {
        foreach (var item in items) item.Dispose();
    }

    [Fact]
    public void A_shard_round_trips_per_sample_features_correctness_and_the_reference()
    {
        using var dir = new TempFolder();
        var settings = Settings();
        var results = Results(settings);
        using var floors = Floors(settings);
        var loaded = SaveAndLoad(dir.Path, settings, results, floors, 2);
        try
        {
            Assert.Equal(settings.Descriptor(2), loaded[0].Settings.Descriptor(2));
            Assert.Equal(["classifier", "resnet"], loaded[0].Settings.Spaces);
            Assert.Equal(settings.Bootstrap, loaded[0].Settings.Bootstrap);
            var back = loaded.SelectMany(s => s.Results).ToList();
            Assert.Equal(results.Count, back.Count);
            for (int i = 0; i < results.Count; i++)
            {
                Assert.Equal(results[i].Batch, back[i].Batch);
                Assert.Equal(results[i].SamplingSeconds, back[i].SamplingSeconds);
                Assert.Equal(2, back[i].Features.Count);
                for (int k = 0; k < 2; k++)
                {
                    Assert.Equal(ScalarType.Float32, back[i].Features[k].dtype);
                    Assert.True(Same(results[i].Features[k], back[i].Features[k]), $"batch {i}, space {k}");
                }
                Assert.Equal(ScalarType.Bool, back[i].CorrectSamples.dtype);
                Assert.True(Same(results[i].CorrectSamples, back[i].CorrectSamples));
                Assert.Equal(results[i].Correct, back[i].Correct);
            }
            Assert.Null(loaded[1].Floors);
            var f = loaded[0].Floors!;
            Assert.Equal(floors.Spaces, f.Spaces);
            Assert.Equal(0.9, f.ClassifierTestAccuracy);
            for (int k = 0; k < 2; k++)
            {
                Assert.Equal(floors.References[k].Space, f.References[k].Space);
                Assert.True(Same(floors.References[k].Features, f.References[k].Features), "reference features");
                Assert.True(Same(floors.References[k].Statistics.Covariance, f.References[k].Statistics.Covariance), "reference covariance");
                Assert.Equal(floors.References[k].KernelSelfMean, f.References[k].KernelSelfMean);
            }
        }
        finally
        {
            Dispose(loaded);
            Dispose(results);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(8)]   // one batch per shard
    public void Merging_shards_gives_the_single_process_rows_exactly(int count)
    {
        using var dir = new TempFolder();
        var settings = Settings();
        var results = Results(settings);
        using var floors = Floors(settings);
        var single = Single(settings, results, floors);
        var loaded = SaveAndLoad(dir.Path, settings, results, floors, count);
        try
        {
            var merged = ShardedEvaluation.Merge([.. loaded.AsEnumerable().Reverse()]);   // any order
            Assert.Equal(ShardedEvaluation.ToJson(single, true), ShardedEvaluation.ToJson(merged, true));
            for (int c = 0; c < 2; c++)
            {
                var (s, m) = (single[c], merged[c]);
                Close(s.ClassAccuracy, m.ClassAccuracy);
                Close(s.ClassAccuracyInterval, m.ClassAccuracyInterval);
                Close(s.Fid, m.Fid);
                Assert.Equal(2, m.Spaces.Count);
                for (int k = 0; k < 2; k++)
                {
                    Close(s.Spaces[k].Fid, m.Spaces[k].Fid);
                    Close(s.Spaces[k].Kid, m.Spaces[k].Kid);
                    Close(s.Spaces[k].FidInterval, m.Spaces[k].FidInterval);
                    Close(s.Spaces[k].KidInterval, m.Spaces[k].KidInterval);
                }
            }
            Assert.Null(merged[0].VersusFirst);
            Assert.Equal(single[1].VersusFirst!.Summary, merged[1].VersusFirst!.Summary);
            foreach (var (a, b) in single[1].VersusFirst!.Differences.Zip(merged[1].VersusFirst!.Differences))
            {
                Close(a.Difference, b.Difference);
                Close(a.Interval, b.Interval);
            }
        }
        finally
        {
            Dispose(loaded);
            Dispose(results);
        }
    }

    private static void Close(double a, double b) => Assert.True(Math.Abs(a - b) <= 1e-9, $"{a} vs {b}");

    private static void Close(IReadOnlyList<double> a, IReadOnlyList<double> b)
    {
        Assert.Equal(a.Count, b.Count);
        for (int i = 0; i < a.Count; i++) Close(a[i], b[i]);
    }

    [Fact]
    public void Rows_carry_both_spaces_the_floors_and_the_verdict_against_the_first()
    {
        var settings = Settings();
        var results = Results(settings);
        using var floors = Floors(settings);
        try
        {
            var rows = Single(settings, results, floors);
            var first = rows[0];
            Assert.Equal(["classifier", "resnet"], first.Spaces.Select(s => s.Space));
            Assert.Equal(first.Spaces[0].Fid, first.Fid);                 // the flat fields are the first space's
            Assert.Equal(1.5, first.FidFloor);
            Assert.Equal(2.5, first.FidFloorAutoencoder);
            Assert.Equal(0.004, first.Spaces[1].KidFloor);
            Assert.Equal(4.5, first.Spaces[1].FidFloorAutoencoder);
            Assert.Equal(settings.Bootstrap, first.Bootstrap);
            Assert.Equal(first.Quality!.ClassAccuracy, first.ClassAccuracyWithInterval);
            Assert.Equal(first.Quality.Spaces[1].Kid, first.Spaces[1].KidWithInterval);
            // 7 samples, (i + c) % 3 != 0 correct: 4 of 7 for configuration 0 (i = 0, 3, 6 wrong).
            Assert.Equal(4.0 / 7, first.ClassAccuracy, 12);
            Assert.Equal(Bootstrap.Wilson(4, 7, Bootstrap.NormalQuantile(0.95)).Lower, first.ClassAccuracyInterval[0], 12);

            var versus = rows[1].VersusFirst!;
            Assert.Equal("ddim, 2 steps, guidance 4, no cache", versus.First);
            Assert.Equal(nameof(Verdict.SecondBetter), versus.Verdict);   // Compare(row, first): the first is better
            Assert.StartsWith("ddim, 2 steps, guidance 4, no cache better than ddim, 2 steps, guidance 4, DeepCache uniform 1:2 branch 0 in every feature space (classifier, resnet; FID and KID)",
                versus.Summary, StringComparison.Ordinal);
            Assert.Equal(4, versus.Differences.Count);
            Assert.All(versus.Differences, d => Assert.True(d.Difference > 0 && d.Interval[0] > 0, $"{d.Space} {d.Metric}"));

            using var doc = JsonDocument.Parse(ShardedEvaluation.ToJson(rows, true));
            var second = doc.RootElement[1];
            Assert.Equal(versus.Summary, second.GetProperty("versus_first").GetProperty("summary").GetString());
            Assert.Equal(JsonValueKind.Null, doc.RootElement[0].GetProperty("versus_first").ValueKind);
            Assert.Equal(2, second.GetProperty("spaces")[1].GetProperty("kid_interval").GetArrayLength());
            foreach (var key in new[] { "fid", "class_accuracy", "fid_floor", "fid_floor_autoencoder", "classifier_test_accuracy", "sampling_seconds" })
                Assert.Equal(JsonValueKind.Number, second.GetProperty(key).ValueKind);   // the one-space fields stay
        }
        finally
        {
            Dispose(results);
        }
    }

    [Fact]
    public void Without_a_second_classifier_there_is_one_space_and_merge_still_equals_the_single_run()
    {
        using var dir = new TempFolder();
        var settings = Settings(second: false);
        var results = Results(settings);
        using var floors = Floors(settings);
        var loaded = SaveAndLoad(dir.Path, settings, results, floors, 2);
        try
        {
            var single = Single(settings, results, floors);
            Assert.Equal(["classifier"], single[0].Spaces.Select(s => s.Space));
            Assert.Equal("none", settings.Descriptor(2)["second_classifier"]);
            Assert.Equal(ShardedEvaluation.ToJson(single, true), ShardedEvaluation.ToJson(ShardedEvaluation.Merge(loaded), true));
            Assert.Contains("in every feature space (classifier; FID and KID)", single[1].VersusFirst!.Summary, StringComparison.Ordinal);
            Assert.Equal(2, single[1].VersusFirst!.Differences.Count);
        }
        finally
        {
            Dispose(loaded);
            Dispose(results);
        }
    }

    [Fact]
    public void Shards_of_one_and_two_spaces_do_not_merge_and_a_tampered_count_is_refused()
    {
        using var dir = new TempFolder();
        var two = Settings();
        var one = Settings(second: false);
        var results2 = Results(two);
        var results1 = Results(one);
        using var floors2 = Floors(two);
        using var floors1 = Floors(one);
        var a = SaveAndLoad(dir.File("a"), two, results2, floors2, 2);
        var b = SaveAndLoad(dir.File("b"), one, results1, floors1, 2);
        try
        {
            var e = Assert.Throws<DiffusionCacheException>(() => ShardedEvaluation.Merge([a[0], b[1]]));
            Assert.Contains("second_classifier", e.Message, StringComparison.Ordinal);
            Assert.Throws<DiffusionCacheException>(() => ShardedEvaluation.Score(two, 0, [.. results2.Where(r => r.Batch.Configuration == 0)], floors1));

            string path = EvalShard.PathIn(dir.File("a"), new Shard(1, 2));
            var text = File.ReadAllText(path);
            int at = text.IndexOf("\"correct\": ", StringComparison.Ordinal);
            int end = text.IndexOf(',', at);
            File.WriteAllText(path, text[..at] + "\"correct\": 99" + text[end..]);
            var bad = Assert.Throws<DiffusionCacheException>(() => EvalShard.Load(path));
            Assert.Contains("correct count", bad.Message, StringComparison.Ordinal);
        }
        finally
        {
            Dispose(a);
            Dispose(b);
            Dispose(results2);
            Dispose(results1);
        }
    }
}
