using DiffusionCache.Caching;
using DiffusionCache.Pipelines;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Evaluation;

/// <summary>Quality figures of generated samples in the metric network's terms: FID against a reference set and
/// the classifier's accuracy on the requested labels (our analogue of a CLIP score).</summary>
/// <param name="Samples">N, the number of samples evaluated.</param>
/// <param name="ClassAccuracy">Fraction (0..1) of samples the classifier assigns to their requested label.</param>
/// <param name="Fid">Fréchet distance in <see cref="FashionClassifier"/>'s feature space (lower is better; not
/// comparable with Inception-FID).</param>
public sealed record QualityReport(int Samples, double ClassAccuracy, double Fid);

/// <summary>Generates class-conditional Fashion-MNIST samples and scores them with the metric network
/// (<see cref="FashionClassifier"/>): FID against reference statistics and class accuracy.</summary>
public static class SampleQuality
{
    /// <summary>Penultimate features [N, 256] of images in [-1, 1], in batches.</summary>
    public static Tensor Features(FashionClassifier classifier, Tensor images, int batch = 1000)
    {
        using var noGrad = no_grad();
        classifier.eval();
        var parts = new List<Tensor>();
        for (long i = 0; i < images.shape[0]; i += batch)
            parts.Add(classifier.Features(images.narrow(0, i, Math.Min(batch, images.shape[0] - i))));
        var all = cat(parts);
        foreach (var p in parts) p.Dispose();
        return all;
    }

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

    /// <summary>Scores generated samples.</summary>
    /// <param name="classifier">The metric network (put in eval mode).</param>
    /// <param name="images">The samples [N, 1, 32, 32] in [-1, 1], N &gt;= 2, on the classifier's device.</param>
    /// <param name="labels">The requested labels, int64 [N].</param>
    /// <param name="reference">Feature statistics of the reference set (e.g. the Fashion-MNIST test split).</param>
    /// <exception cref="DiffusionCacheException">Fewer than 2 samples.</exception>
    public static QualityReport Evaluate(FashionClassifier classifier, Tensor images, Tensor labels, FeatureStatistics reference)
    {
        using var features = Features(classifier, images);
        using var stats = FeatureStatistics.Of(features);
        double accuracy;
        using (no_grad())
        using (var scope = NewDisposeScope())
        {
            classifier.eval();
            var predicted = classifier.call(images).argmax(1);
            accuracy = (predicted == labels).to(ScalarType.Float64).mean().item<double>();
        }
        return new QualityReport((int)images.shape[0], accuracy, stats.FrechetDistance(reference));
    }
}
