using DiffusionCache.Evaluation;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Evaluation;

public class SampleQualityTests
{
    private static Tensor Gaussian(long n, long d, double shift, ulong seed) =>
        randn([n, d], ScalarType.Float64, generator: new Generator(seed)) + shift;

    private static readonly BootstrapOptions Options = new(Replicates: 100, Seed: 5);

    [Fact]
    public void Score_estimates_are_fid_kid_and_accuracy_of_the_full_sample()
    {
        using var reference = ReferenceFeatures.Of("a", Gaussian(300, 4, 0, 1));
        using var features = Gaussian(80, 4, 0.3, 2);
        using var correct = tensor(Enumerable.Range(0, 80).Select(i => i % 4 != 0).ToArray());
        var report = SampleQuality.Score([reference], [features], correct, Options);

        Assert.Equal(80, report.Samples);
        var space = report["a"];
        Assert.Equal(KernelDistance.Kid(features, reference.Features), space.Kid.Estimate, 9);
        using (var stats = FeatureStatistics.Of(features))
            Assert.Equal(stats.FrechetDistance(reference.Statistics), space.Fid.Estimate, 6);
        Assert.Equal(reference.Fid(features), space.Fid.Estimate, 9);
        Assert.Equal(reference.Kid(features), space.Kid.Estimate, 9);
        var wilson = Bootstrap.Wilson(60, 80);   // z from the level (0.95) agrees with 1.96 to about 1e-7
        Assert.Equal(0.75, report.ClassAccuracy.Estimate, 12);
        Assert.Equal(wilson.Lower, report.ClassAccuracy.Lower, 6);
        Assert.Equal(wilson.Upper, report.ClassAccuracy.Upper, 6);
        Assert.Equal(100, space.FidReplicates.Count);
        Assert.Equal(100, report.AccuracyReplicates.Count);
        Assert.True(space.Kid.Lower < space.Kid.Upper && space.Kid.Contains(space.Kid.Estimate), space.Kid.ToString("0.0000"));
        Assert.True(space.Fid.Lower < space.Fid.Upper);
        Assert.Throws<KeyNotFoundException>(() => report["b"]);
    }

    [Fact]
    public void Kid_replicates_are_the_kid_of_each_resample_without_self_pairs()
    {
        using var reference = ReferenceFeatures.Of("a", Gaussian(50, 3, 0, 3));
        using var features = Gaussian(12, 3, 0.5, 4);
        using var correct = ones(12, ScalarType.Bool);
        var report = SampleQuality.Score([reference], [features], correct, new BootstrapOptions(3, 9));
        using var counts = Bootstrap.Counts(12, 3, 9);
        for (int b = 0; b < 3; b++)
        {
            // Written out: the mean kernel over pairs of draws that are different samples, the reference term, the cross term.
            var c = counts[b].data<double>().ToArray();
            using var k = KernelDistance.PolynomialKernel(features, features);
            using var cross = KernelDistance.CrossMeans(features, reference.Features);
            double sum = 0, pairs = 0, crossSum = 0;
            for (int i = 0; i < 12; i++)
            {
                crossSum += c[i] * cross[i].item<double>();
                for (int j = 0; j < 12; j++)
                    if (i != j) { sum += c[i] * c[j] * k[i, j].item<double>(); pairs += c[i] * c[j]; }
            }
            double expected = sum / pairs + reference.KernelSelfMean - 2 * crossSum / 12;
            Assert.Equal(expected, report.Spaces[0].KidReplicates[b], 9);
            using var stats = FeatureStatistics.Of(features, counts[b]);
            Assert.Equal(reference.Statistics.FrechetDistance(stats), report.Spaces[0].FidReplicates[b], 9);
        }
    }

    [Fact]
    public void Reports_are_deterministic_for_one_seed()
    {
        using var reference = ReferenceFeatures.Of("a", Gaussian(200, 4, 0, 1));
        using var features = Gaussian(60, 4, 0.2, 2);
        using var correct = ones(60, ScalarType.Bool);
        var a = SampleQuality.Score([reference], [features], correct, Options);
        var b = SampleQuality.Score([reference], [features], correct, Options);
        var c = SampleQuality.Score([reference], [features], correct, Options with { Seed = 6 });
        Assert.Equal(a.Spaces[0].Fid, b.Spaces[0].Fid);
        Assert.Equal(a.Spaces[0].Kid, b.Spaces[0].Kid);
        Assert.NotEqual(a.Spaces[0].Kid, c.Spaces[0].Kid);
    }

    [Fact]
    public void Paired_comparison_ranks_a_clearly_better_set_in_every_space()
    {
        using var refA = ReferenceFeatures.Of("a", Gaussian(400, 4, 0, 1));
        using var refB = ReferenceFeatures.Of("b", Gaussian(400, 6, 0, 2));
        using var goodA = Gaussian(150, 4, 0, 3);
        using var goodB = Gaussian(150, 6, 0, 4);
        using var badA = Gaussian(150, 4, 0.6, 5);
        using var badB = Gaussian(150, 6, 0.6, 6);
        using var correct = ones(150, ScalarType.Bool);
        var good = SampleQuality.Score([refA, refB], [goodA, goodB], correct, Options);
        var bad = SampleQuality.Score([refA, refB], [badA, badB], correct, Options);

        var comparison = SampleQuality.Compare(good, bad);
        Assert.Equal(Verdict.FirstBetter, comparison.Verdict);
        Assert.Equal(4, comparison.Differences.Count);
        Assert.All(comparison.Differences, d => Assert.True(d.Difference.Upper < 0, $"{d.Space} {d.Metric} {d.Difference.ToString("0.0000")}"));
        Assert.Contains("in every feature space", comparison.Describe("good", "bad"));
        Assert.Equal(Verdict.SecondBetter, SampleQuality.Compare(bad, good).Verdict);
        Assert.Equal(Verdict.NotDistinguishable, comparison.ClassAccuracyVerdict);

        var self = SampleQuality.Compare(good, good);
        Assert.Equal(Verdict.NotDistinguishable, self.Verdict);
        Assert.All(self.Differences, d => Assert.Equal(new Interval(0, 0, 0), d.Difference));
        Assert.Contains("not distinguishable", self.Describe("good", "good"));
    }

    [Fact]
    public void Spaces_that_disagree_make_the_comparison_conflicting()
    {
        using var refA = ReferenceFeatures.Of("a", Gaussian(400, 4, 0, 1));
        using var refB = ReferenceFeatures.Of("b", Gaussian(400, 4, 0, 2));
        using var firstA = Gaussian(150, 4, 0, 3);     // first set: good in space a, bad in space b
        using var firstB = Gaussian(150, 4, 0.7, 4);
        using var secondA = Gaussian(150, 4, 0.7, 5);  // second set: the other way round
        using var secondB = Gaussian(150, 4, 0, 6);
        using var correct = ones(150, ScalarType.Bool);
        var first = SampleQuality.Score([refA, refB], [firstA, firstB], correct, Options);
        var second = SampleQuality.Score([refA, refB], [secondA, secondB], correct, Options);
        var comparison = SampleQuality.Compare(first, second);
        Assert.Equal(Verdict.Conflicting, comparison.Verdict);
        Assert.Contains("conflict", comparison.Describe("x", "y"));
    }

    [Fact]
    public void Paired_accuracy_difference_sees_a_consistent_gap()
    {
        using var reference = ReferenceFeatures.Of("a", Gaussian(100, 3, 0, 1));
        using var features = Gaussian(400, 3, 0, 2);
        using var allRight = ones(400, ScalarType.Bool);
        using var someWrong = tensor(Enumerable.Range(0, 400).Select(i => i % 10 != 0).ToArray());
        var a = SampleQuality.Score([reference], [features], allRight, Options);
        var b = SampleQuality.Score([reference], [features], someWrong, Options);
        var comparison = SampleQuality.Compare(a, b);
        Assert.Equal(0.1, comparison.ClassAccuracy.Estimate, 12);
        Assert.Equal(Verdict.FirstBetter, comparison.ClassAccuracyVerdict);
        Assert.Equal(Verdict.NotDistinguishable, comparison.Verdict);   // same features: FID and KID identical
    }

    [Fact]
    public void Comparison_needs_the_same_samples_options_and_spaces()
    {
        using var reference = ReferenceFeatures.Of("a", Gaussian(100, 3, 0, 1));
        using var other = ReferenceFeatures.Of("b", Gaussian(100, 3, 0, 1));
        using var f40 = Gaussian(40, 3, 0, 2);
        using var f50 = Gaussian(50, 3, 0, 3);
        using var c40 = ones(40, ScalarType.Bool);
        using var c50 = ones(50, ScalarType.Bool);
        var a = SampleQuality.Score([reference], [f40], c40, Options);
        Assert.Throws<DiffusionCacheException>(() => SampleQuality.Compare(a, SampleQuality.Score([reference], [f50], c50, Options)));
        Assert.Throws<DiffusionCacheException>(() => SampleQuality.Compare(a, SampleQuality.Score([reference], [f40], c40, Options with { Seed = 1 })));
        Assert.Throws<DiffusionCacheException>(() => SampleQuality.Compare(a, SampleQuality.Score([other], [f40], c40, Options)));
        Assert.Throws<DiffusionCacheException>(() => SampleQuality.Compare(a, a with { AccuracyReplicates = [] }));
    }

    [Fact]
    public void Evaluate_scores_images_through_the_networks()
    {
        manual_seed(1);
        using var classifier = new FashionClassifier();
        using var resnet = new FashionResNet();
        var spaces = new[] { new FeatureSpace("classifier", classifier), new FeatureSpace("resnet", resnet) };
        using var refImages = rand([24, 1, 32, 32]) * 2 - 1;
        using var images = rand([10, 1, 32, 32]) * 2 - 1;
        using var labels = arange(10L);
        using var r0 = ReferenceFeatures.Of(spaces[0], refImages);
        using var r1 = ReferenceFeatures.Of(spaces[1], refImages);
        var report = SampleQuality.Evaluate(classifier, spaces, [r0, r1], images, labels, new BootstrapOptions(10));
        Assert.Equal(new[] { "classifier", "resnet" }, report.Spaces.Select(s => s.Space));
        using var correct = SampleQuality.Correct(classifier, images, labels);
        long right = correct.sum().item<long>();
        Assert.Equal(right / 10.0, report.ClassAccuracy.Estimate, 12);
        Assert.Throws<DiffusionCacheException>(() => SampleQuality.Evaluate(classifier, spaces, [r1, r0], images, labels));
    }
}
