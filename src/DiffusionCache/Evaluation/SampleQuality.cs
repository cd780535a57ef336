using System.Text.Json.Serialization;
using DiffusionCache.Caching;
using DiffusionCache.Pipelines;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Evaluation;

/// <summary>FID and KID of a sample set in one feature space, each with its percentile bootstrap interval.</summary>
/// <param name="Space">The feature space's name.</param>
/// <param name="Fid">Fréchet distance to the reference set (lower is better). FID is biased upwards at small N
/// and its bootstrap replicates more so (a resample holds about 63 % distinct samples), so the interval may lie
/// above the estimate: compare FIDs at equal N, and prefer the paired differences of
/// <see cref="SampleQuality.Compare"/>.</param>
/// <param name="Kid">Unbiased KID (squared MMD, cubic polynomial kernel) to the reference set (lower is better;
/// slightly negative when the distributions agree). Resamples exclude pairs of a sample with its own copy.</param>
public sealed record SpaceQuality(string Space, Interval Fid, Interval Kid)
{
    /// <summary>FID of each bootstrap resample, in the order of <see cref="Bootstrap.Counts"/>.</summary>
    [JsonIgnore] public IReadOnlyList<double> FidReplicates { get; init; } = [];
    /// <summary>KID of each bootstrap resample, in the order of <see cref="Bootstrap.Counts"/>.</summary>
    [JsonIgnore] public IReadOnlyList<double> KidReplicates { get; init; } = [];
}

/// <summary>Quality figures of generated samples: FID and KID in every feature space, and the class accuracy of the
/// metric classifier on the requested labels (our analogue of a CLIP score), all with intervals.</summary>
/// <param name="Samples">N, the number of samples evaluated.</param>
/// <param name="ClassAccuracy">Fraction (0..1) of samples the classifier assigns to their requested label, with its
/// Wilson score interval.</param>
/// <param name="Spaces">FID and KID per feature space, in the order the spaces were given.</param>
/// <param name="Bootstrap">How the intervals were drawn; reports compare only when these and N are equal.</param>
public sealed record QualityReport(int Samples, Interval ClassAccuracy, IReadOnlyList<SpaceQuality> Spaces, BootstrapOptions Bootstrap)
{
    /// <summary>Class accuracy of each bootstrap resample (for paired comparisons).</summary>
    [JsonIgnore] public IReadOnlyList<double> AccuracyReplicates { get; init; } = [];

    /// <summary>The figures of the space named <paramref name="space"/>.</summary>
    /// <exception cref="KeyNotFoundException">No such space.</exception>
    public SpaceQuality this[string space] =>
        Spaces.FirstOrDefault(s => s.Space == space) ?? throw new KeyNotFoundException($"no feature space '{space}' in this report");
}

/// <summary>Which of two sample sets a paired difference favours.</summary>
public enum Verdict
{
    /// <summary>The interval of the difference contains 0 (or the metrics disagree in no direction).</summary>
    NotDistinguishable,
    /// <summary>The first set is better beyond the interval (in every metric, for an overall verdict).</summary>
    FirstBetter,
    /// <summary>The second set is better beyond the interval (in every metric, for an overall verdict).</summary>
    SecondBetter,
    /// <summary>Overall only: some metrics favour the first set beyond their intervals and some the second.</summary>
    Conflicting,
}

/// <summary>One paired difference, first minus second, with its bootstrap interval.</summary>
/// <param name="Space">The feature space's name.</param>
/// <param name="Metric">"FID" or "KID" (lower is better for both).</param>
/// <param name="Difference">first - second: estimate and percentile interval of the paired replicates.</param>
/// <param name="Verdict">Whom the difference favours: <see cref="Verdict.FirstBetter"/> when the whole interval is
/// below 0.</param>
public sealed record MetricDifference(string Space, string Metric, Interval Difference, Verdict Verdict);

/// <summary>Two sample sets compared on the same seeds with a paired bootstrap (each resample draws the same sample
/// indices for both).</summary>
/// <param name="Differences">FID and KID differences per feature space.</param>
/// <param name="ClassAccuracy">Accuracy difference, first - second (higher is better), with its paired interval.</param>
/// <param name="ClassAccuracyVerdict">Whom the accuracy difference favours.</param>
/// <param name="Verdict">The ranking by FID and KID: a set is better only when every space and both metrics say
/// so beyond their intervals; <see cref="Verdict.Conflicting"/> when some favour one set and some the other.</param>
public sealed record QualityComparison(IReadOnlyList<MetricDifference> Differences, Interval ClassAccuracy,
    Verdict ClassAccuracyVerdict, Verdict Verdict)
{
    /// <summary>One sentence: "A better than B in every feature space (FID and KID) beyond the 95 % intervals",
    /// "A and B not distinguishable ...", or which metrics conflict.</summary>
    public string Describe(string first, string second, double level = 0.95)
    {
        string pct = (level * 100).ToString("0.#", System.Globalization.CultureInfo.InvariantCulture);
        string spaces = string.Join(", ", Differences.Select(d => d.Space).Distinct());
        return Verdict switch
        {
            Verdict.FirstBetter => $"{first} better than {second} in every feature space ({spaces}; FID and KID) beyond the {pct} % intervals",
            Verdict.SecondBetter => $"{second} better than {first} in every feature space ({spaces}; FID and KID) beyond the {pct} % intervals",
            Verdict.Conflicting => $"{first} vs {second}: the metrics conflict (" + string.Join("; ", Differences
                .Where(d => d.Verdict != Verdict.NotDistinguishable)
                .Select(d => $"{d.Metric} in {d.Space} favours {(d.Verdict == Verdict.FirstBetter ? first : second)}")) + ")",
            _ => $"{first} and {second} not distinguishable in FID and KID across {spaces} at {pct} %" +
                (Differences.Any(d => d.Verdict != Verdict.NotDistinguishable)
                    ? " (" + string.Join("; ", Differences.Where(d => d.Verdict != Verdict.NotDistinguishable)
                        .Select(d => $"only {d.Metric} in {d.Space} favours {(d.Verdict == Verdict.FirstBetter ? first : second)}")) + ")"
                    : ""),
        };
    }
}

/// <summary>Generates class-conditional Fashion-MNIST samples and scores them with the metric network
/// (<see cref="FashionClassifier"/>): FID against reference statistics and class accuracy.</summary>
public static class SampleQuality
{
    /// <summary>The metric network's features [N, D] of images in [-1, 1], in batches (see
    /// <see cref="FeatureSpace.Features"/>).</summary>
    public static Tensor Features(MetricNetwork network, Tensor images, int batch = 1000) =>
        new FeatureSpace(network.GetName(), network).Features(images, batch);

    /// <summary>
    /// Generates <paramref name="count"/> samples with balanced labels (sample i asks for label i mod classes), in
    /// batches whose seed is the batch index: the same count and batch size give the same noise for every solver,
    /// step count and cache setting, so comparisons between configurations are paired.
    /// </summary>
    public static (Tensor Images, Tensor Labels) Generate(ClassConditionalPipeline pipeline, string solver, int steps,
        double guidance, int count, int batch, Func<ICachePolicy?>? policy = null, IProgress<long>? progress = null,
        CancellationToken cancel = default)
    {
        if (count < 2) throw new DiffusionCacheException("need at least 2 samples");
        if (batch < 1) throw new DiffusionCacheException("batch must be positive");
        using var scheduler = pipeline.CreateScheduler(solver);
        var images = new List<Tensor>();
        var labels = new List<long>();
        for (int start = 0, index = 0; start < count; start += batch, index++)
        {
            var ids = Enumerable.Range(start, Math.Min(batch, count - start)).Select(i => (long)(i % pipeline.NumLabels)).ToArray();
            using var cache = policy?.Invoke();
            images.Add(pipeline.Generate(scheduler, ids, seed: index, steps, guidance, cache, cancel: cancel));
            labels.AddRange(ids);
            progress?.Report(start + ids.Length);
        }
        var all = cat(images);
        foreach (var i in images) i.Dispose();
        return (all, tensor(labels.ToArray()));
    }

    /// <summary>Scores generated samples: class accuracy with <paramref name="classifier"/>, FID and KID in every
    /// feature space against its reference, with bootstrap intervals.</summary>
    /// <param name="classifier">The network whose predictions give the class accuracy (put in eval mode).</param>
    /// <param name="spaces">The feature spaces.</param>
    /// <param name="references">The reference set in each space, in the order of <paramref name="spaces"/>.</param>
    /// <param name="images">The samples [N, 1, 32, 32] in [-1, 1], N &gt;= 2, on the networks' device.</param>
    /// <param name="labels">The requested labels, int64 [N].</param>
    /// <param name="bootstrap">How intervals are drawn (default: 200 replicates, seed 0, 95 %).</param>
    /// <exception cref="DiffusionCacheException">Fewer than 2 samples, or spaces and references that do not pair
    /// up.</exception>
    public static QualityReport Evaluate(MetricNetwork classifier, IReadOnlyList<FeatureSpace> spaces,
        IReadOnlyList<ReferenceFeatures> references, Tensor images, Tensor labels, BootstrapOptions? bootstrap = null)
    {
        if (spaces.Count != references.Count || spaces.Where((s, i) => s.Name != references[i].Space).Any())
            throw new DiffusionCacheException("every feature space needs its reference, in the same order");
        if (images.shape[0] < 2) throw new DiffusionCacheException("need at least 2 samples");
        var features = new List<Tensor>();
        try
        {
            foreach (var space in spaces) features.Add(space.Features(images));
            using var correct = Correct(classifier, images, labels);
            return Score(references, features, correct, bootstrap ?? new BootstrapOptions());
        }
        finally
        {
            foreach (var f in features) f.Dispose();
        }
    }

    /// <summary>Whether <paramref name="classifier"/> assigns each image its label: bool [N].</summary>
    public static Tensor Correct(MetricNetwork classifier, Tensor images, Tensor labels, int batch = 1000)
    {
        using var noGrad = no_grad();
        classifier.eval();
        var parts = new List<Tensor>();
        try
        {
            for (long i = 0; i < images.shape[0]; i += batch)
            {
                using var scope = NewDisposeScope();
                long n = Math.Min(batch, images.shape[0] - i);
                parts.Add((classifier.call(images.narrow(0, i, n)).argmax(1) == labels.narrow(0, i, n).to(images.device)).MoveToOuterDisposeScope());
            }
            return cat(parts);
        }
        finally
        {
            foreach (var p in parts) p.Dispose();
        }
    }

    /// <summary>The report from precomputed features: FID and KID in each space (features[i] against
    /// references[i]) and class accuracy from <paramref name="correct"/>, with intervals. Each bootstrap replicate
    /// resamples the N samples with replacement (<see cref="Bootstrap.Counts"/>; the reference is fixed); FID and
    /// KID get percentile intervals, accuracy a Wilson interval, and the replicates are kept for
    /// <see cref="Compare"/>.</summary>
    /// <param name="references">The reference set per space.</param>
    /// <param name="features">The samples' features per space, [N, D_i] each, rows in sample order.</param>
    /// <param name="correct">Whether each sample was classified as its requested label, [N] (bool or 0/1).</param>
    /// <param name="bootstrap">How intervals are drawn.</param>
    public static QualityReport Score(IReadOnlyList<ReferenceFeatures> references, IReadOnlyList<Tensor> features,
        Tensor correct, BootstrapOptions bootstrap)
    {
        bootstrap.Validate();
        if (references.Count != features.Count) throw new DiffusionCacheException("every feature set needs its reference");
        int n = (int)correct.shape[0];
        if (n < 2) throw new DiffusionCacheException("need at least 2 samples");
        if (features.Any(f => f.dim() != 2 || f.shape[0] != n))
            throw new DiffusionCacheException($"every feature set must be [N, D] with N = {n}, the number of samples");
        using var scope = NewDisposeScope();
        var counts = Bootstrap.Counts(n, bootstrap.Replicates, bootstrap.Seed);
        var spaces = new List<SpaceQuality>();
        for (int i = 0; i < features.Count; i++)
            spaces.Add(ScoreSpace(references[i], features[i].to(ScalarType.Float64, CPU), counts, bootstrap.Level));

        var right = correct.to(ScalarType.Float64, CPU);
        long successes = (long)Math.Round(right.sum().item<double>());
        var accuracyReplicates = (counts.matmul(right) / n).data<double>().ToArray();
        var accuracy = Bootstrap.Wilson(successes, n, Bootstrap.NormalQuantile(bootstrap.Level));
        return new QualityReport(n, accuracy, spaces, bootstrap) { AccuracyReplicates = accuracyReplicates };
    }

    private static SpaceQuality ScoreSpace(ReferenceFeatures reference, Tensor f, Tensor counts, double level)
    {
        using var scope = NewDisposeScope();
        var refFeatures = reference.Features.to(CPU);
        if (refFeatures.shape[1] != f.shape[1])
            throw new DiffusionCacheException($"{reference.Space}: features are {f.shape[1]}-d, the reference {refFeatures.shape[1]}-d");
        double n = f.shape[0];

        double fid;
        using (var stats = FeatureStatistics.Of(f)) fid = reference.Statistics.FrechetDistance(stats);
        var fidReplicates = new double[counts.shape[0]];
        for (int b = 0; b < fidReplicates.Length; b++)
        {
            using var inner = NewDisposeScope();
            using var stats = FeatureStatistics.Of(f, counts[b]);
            fidReplicates[b] = reference.Statistics.FrechetDistance(stats);
        }

        // KID with all terms that involve the samples precomputed: the kernel among samples and each sample's mean
        // kernel value against the reference. A resample with multiplicities c gives
        // mean over pairs of distinct draws that are not the same sample = (c'Kc - sum c_i^2 K_ii) / (n^2 - sum c_i^2).
        var kxx = KernelDistance.PolynomialKernel(f, f);
        var diagonal = kxx.diagonal();
        var cross = KernelDistance.CrossMeans(f, refFeatures);
        double kid = (kxx.sum().item<double>() - diagonal.sum().item<double>()) / (n * (n - 1))
            + reference.KernelSelfMean - 2 * cross.mean().item<double>();
        var c2 = counts.pow(2);
        var pairs = n * n - c2.sum([1]);
        var xx = ((counts.matmul(kxx) * counts).sum([1]) - c2.matmul(diagonal)) / pairs;
        var kidReplicates = (xx + reference.KernelSelfMean - 2 * counts.matmul(cross) / n).data<double>().ToArray();

        return new SpaceQuality(reference.Space, Bootstrap.Percentile(fid, fidReplicates, level),
            Bootstrap.Percentile(kid, kidReplicates, level))
        { FidReplicates = fidReplicates, KidReplicates = kidReplicates };
    }

    /// <summary>Compares two reports of the same seeds (sample i of both asked for the same label with the same
    /// noise) with a paired bootstrap: replicate b of both resampled the same indices, so the interval of the
    /// difference is the percentile interval of the per-replicate differences, first - second.</summary>
    /// <exception cref="DiffusionCacheException">The reports differ in N, bootstrap options or feature spaces, or
    /// lack replicates.</exception>
    public static QualityComparison Compare(QualityReport first, QualityReport second)
    {
        if (first.Samples != second.Samples || first.Bootstrap != second.Bootstrap)
            throw new DiffusionCacheException("paired comparison needs reports of the same sample count and bootstrap options");
        if (!first.Spaces.Select(s => s.Space).SequenceEqual(second.Spaces.Select(s => s.Space)))
            throw new DiffusionCacheException("paired comparison needs reports in the same feature spaces");
        int replicates = first.Bootstrap.Replicates;
        if (first.AccuracyReplicates.Count != replicates || second.AccuracyReplicates.Count != replicates ||
            first.Spaces.Concat(second.Spaces).Any(s => s.FidReplicates.Count != replicates || s.KidReplicates.Count != replicates))
            throw new DiffusionCacheException("paired comparison needs the bootstrap replicates (reports made by SampleQuality)");
        double level = first.Bootstrap.Level;

        var differences = new List<MetricDifference>();
        for (int i = 0; i < first.Spaces.Count; i++)
        {
            var (a, b) = (first.Spaces[i], second.Spaces[i]);
            differences.Add(Difference(a.Space, "FID", a.Fid.Estimate - b.Fid.Estimate, a.FidReplicates, b.FidReplicates, level, lowerIsBetter: true));
            differences.Add(Difference(a.Space, "KID", a.Kid.Estimate - b.Kid.Estimate, a.KidReplicates, b.KidReplicates, level, lowerIsBetter: true));
        }
        var accuracy = Difference("", "accuracy", first.ClassAccuracy.Estimate - second.ClassAccuracy.Estimate,
            first.AccuracyReplicates, second.AccuracyReplicates, level, lowerIsBetter: false);

        var verdicts = differences.Select(d => d.Verdict).ToList();
        var overall = verdicts.All(v => v == Verdict.FirstBetter) ? Verdict.FirstBetter
            : verdicts.All(v => v == Verdict.SecondBetter) ? Verdict.SecondBetter
            : verdicts.Contains(Verdict.FirstBetter) && verdicts.Contains(Verdict.SecondBetter) ? Verdict.Conflicting
            : Verdict.NotDistinguishable;
        return new QualityComparison(differences, accuracy.Difference, accuracy.Verdict, overall);
    }

    private static MetricDifference Difference(string space, string metric, double estimate, IReadOnlyList<double> a,
        IReadOnlyList<double> b, double level, bool lowerIsBetter)
    {
        var interval = Bootstrap.Percentile(estimate, a.Select((x, i) => x - b[i]).ToList(), level);
        var verdict = interval.Upper < 0 ? (lowerIsBetter ? Verdict.FirstBetter : Verdict.SecondBetter)
            : interval.Lower > 0 ? (lowerIsBetter ? Verdict.SecondBetter : Verdict.FirstBetter)
            : Verdict.NotDistinguishable;
        return new MetricDifference(space, metric, interval, verdict);
    }
}
