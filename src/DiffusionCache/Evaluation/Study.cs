using System.Globalization;
using System.Text.Json;
using DiffusionCache.Caching;
using DiffusionCache.Formats;
using DiffusionCache.Pipelines;
using static TorchSharp.torch;

namespace DiffusionCache.Evaluation;

/// <summary>One sampling configuration of a study (a point on a frontier, a row of a table).</summary>
/// <param name="Name">Unique row label, e.g. "Block Caching δ=0.161".</param>
/// <param name="Method">Family for grouping and plotting (e.g. "fewer-steps", "deepcache", "blockcache").</param>
/// <param name="Solver">Solver name.</param>
/// <param name="Steps">Denoising steps.</param>
/// <param name="Cache">The cache setting as given (<see cref="CacheSpec"/>).</param>
/// <param name="CacheName">The cache setting as resolved.</param>
/// <param name="Create">Makes a fresh policy per generation; null: uncached.</param>
/// <param name="Reference">Name of the uncached point (same solver) whose samples PSNR/SSIM and the paired
/// comparison, and whose time the speedup, are relative to; null for a point that is its own reference.</param>
public sealed record StudyPoint(string Name, string Method, string Solver, int Steps, string Cache, string CacheName,
    Func<ICachePolicy>? Create, string? Reference)
{
    /// <summary>The method's knob at this point (steps, N, δ, threshold), for plots and tables; null when none.</summary>
    public double? Knob { get; init; }

    /// <summary>See <see cref="SampleSetting.CacheFingerprint"/>.</summary>
    public string CacheFingerprint { get; init; } = "";
}

/// <summary>A point's measured speed relative to its reference: the median over timed rounds of the within-round
/// ratio (reference time / this point's time), with the lowest and highest round.</summary>
/// <param name="MsPerImage">Median wall time per image, in milliseconds.</param>
/// <param name="Speedup">Median, lowest and highest per-round speedup over the reference.</param>
/// <param name="Rounds">Timed rounds.</param>
/// <param name="ReusedFraction">Share of the policy's cached-site evaluations it answered from its cache (blocks,
/// or whole steps for step-level policies); 0 uncached.</param>
/// <param name="CpuShare">Share of the machine's CPU time this process got while timing (<see cref="Analysis.CpuShare"/>);
/// well below 1 means other work ran and the ratios are unreliable.</param>
public sealed record StudyTiming(double MsPerImage, Interval Speedup, int Rounds, double ReusedFraction, double CpuShare);

/// <summary>What a study measured at one point.</summary>
/// <param name="Point">The point.</param>
/// <param name="Quality">FID and KID in every feature space and class accuracy, with intervals.</param>
/// <param name="VersusReference">Paired comparison with the reference point (this point first); null for a
/// reference.</param>
/// <param name="Psnr">PSNR in dB of the samples against the reference point's (same seeds), over all samples.</param>
/// <param name="Ssim">SSIM against the reference point's samples.</param>
/// <param name="Timing">Measured speed; null until timed.</param>
public sealed record StudyResult(StudyPoint Point, QualityReport Quality, QualityComparison? VersusReference, double Psnr, double Ssim,
    StudyTiming? Timing);

/// <summary>
/// Measures sampling configurations on the class-conditional model the way the papers do, resumably: quality from
/// N samples per point on the same seeds for every point (batches kept in a <see cref="SampleStore"/>, so a killed
/// run continues), scored in every feature space with bootstrap intervals and paired against the point's uncached
/// reference; speed side by side in one process (<see cref="CacheBenchmark"/>: rotating rounds, within-round ratios),
/// kept in a JSON file once measured. Used by the frontier and the paper report.
/// </summary>
public sealed class Study : IDisposable
{
    /// <summary>The model that samples.</summary>
    public required ClassConditionalPipeline Pipeline { get; init; }
    /// <summary>Names the model in sample settings.</summary>
    public required string Model { get; init; }
    /// <summary>The network whose predictions give the class accuracy.</summary>
    public required MetricNetwork Classifier { get; init; }
    /// <summary>The feature spaces FID and KID are measured in.</summary>
    public required IReadOnlyList<FeatureSpace> Spaces { get; init; }
    /// <summary>The reference set in each space, in the order of <see cref="Spaces"/>.</summary>
    public required IReadOnlyList<ReferenceFeatures> References { get; init; }
    /// <summary>Where generated batches are kept.</summary>
    public required SampleStore Store { get; init; }
    /// <summary>N, samples per point.</summary>
    public required int Samples { get; init; }
    /// <summary>Samples per sampling batch (fixes the noise of every batch).</summary>
    public required int Batch { get; init; }
    /// <summary>Guidance scale.</summary>
    public required double Guidance { get; init; }
    /// <summary>How intervals are drawn.</summary>
    public BootstrapOptions Bootstrap { get; init; } = new();

    private readonly Dictionary<string, Tensor> _images = [];
    private string? _scoringKey;

    /// <summary>The sample setting of a point.</summary>
    public SampleSetting Setting(StudyPoint point) => new(Model, point.Solver, point.Steps, Guidance, Batch, point.Cache, point.CacheName,
        Pipeline.UNet.parameters().First().dtype.ToString()) { CacheFingerprint = point.CacheFingerprint };

    /// <summary>Samples (or loads) and scores every point, references first; timing is left null (see
    /// <see cref="Time"/>).</summary>
    /// <param name="points">The points; every <see cref="StudyPoint.Reference"/> names a point of the list.</param>
    /// <param name="progress">Told (point name, samples ready) while sampling.</param>
    /// <param name="cancel">Checked between batches.</param>
    public IReadOnlyList<StudyResult> Measure(IReadOnlyList<StudyPoint> points, IProgress<(string Point, long Samples)>? progress = null,
        CancellationToken cancel = default)
    {
        Check(points);
        var reports = new Dictionary<string, QualityReport>();
        var order = points.Where(p => p.Reference is null).Concat(points.Where(p => p.Reference is not null)).ToList();
        foreach (var point in order) reports[point.Name] = Score(point, progress, cancel);
        return [.. points.Select(p =>
        {
            if (p.Reference is not string r) return new StudyResult(p, reports[p.Name], null, double.PositiveInfinity, 1, null);
            var (mine, theirs) = (_images[p.Name], _images[r]);
            return new StudyResult(p, reports[p.Name], SampleQuality.Compare(reports[p.Name], reports[r]),
                ImageMetrics.Psnr(mine, theirs, 2), ImageMetrics.Ssim(mine, theirs, 2), null);
        })];
    }

    /// <summary>The samples of a point (generated into the store when missing); kept for the study's lifetime.</summary>
    public Tensor Images(StudyPoint point, IProgress<(string Point, long Samples)>? progress = null, CancellationToken cancel = default)
    {
        if (_images.TryGetValue(point.Name, out var kept)) return kept;
        using var scheduler = Pipeline.CreateScheduler(point.Solver);
        var (images, labels) = Store.Samples(Setting(point), Samples, Pipeline.NumLabels, (index, ids) =>
        {
            using var cache = point.Create?.Invoke();
            using var noGrad = no_grad();
            return Pipeline.Generate(scheduler, ids, seed: index, point.Steps, Guidance, cache, cancel: cancel);
        }, progress is null ? null : new Progress<long>(n => progress.Report((point.Name, n))), cancel);
        labels.Dispose();
        _images[point.Name] = images;
        return images;
    }

    /// <summary>The quality of a point's samples (sampled into the store when missing): read from the report kept
    /// beside them when this scoring setup has scored them before (<see cref="QualityStore"/>), else scored and kept.</summary>
    /// <param name="point">The point.</param>
    /// <param name="progress">Told (point name, samples ready) while sampling.</param>
    /// <param name="cancel">Checked between batches.</param>
    public QualityReport Score(StudyPoint point, IProgress<(string Point, long Samples)>? progress = null, CancellationToken cancel = default)
    {
        var images = Images(point, progress, cancel);
        var setting = Setting(point);
        _scoringKey ??= QualityStore.ScoringKey(Samples, Bootstrap, Classifier, Spaces, References);
        var qualities = new QualityStore(Store);
        if (qualities.Load(setting, _scoringKey) is { } kept) return kept;
        using var labels = tensor(Enumerable.Range(0, Samples).Select(i => (long)(i % Pipeline.NumLabels)).ToArray());
        var report = SampleQuality.Evaluate(Classifier, Spaces, References, images, labels, Bootstrap);
        qualities.Save(setting, _scoringKey, report);
        return report;
    }

    /// <summary>Frees the samples of <paramref name="point"/> kept in memory (they stay in the store).</summary>
    public void Forget(StudyPoint point)
    {
        ArgumentNullException.ThrowIfNull(point);
        if (_images.Remove(point.Name, out var images)) images.Dispose();
    }

    /// <summary>Times every point side by side, one <see cref="CacheBenchmark"/> per solver (its points rotate through
    /// the rounds), or reads the timings from <paramref name="path"/> when a previous run of the same points saved
    /// them there. Speedups are within-round ratios to each point's reference.</summary>
    /// <param name="results">What <see cref="Measure"/> returned.</param>
    /// <param name="target">The fixed-seed generation to time, per solver.</param>
    /// <param name="repeats">Timed rounds.</param>
    /// <param name="path">Where the timings are kept (JSON).</param>
    /// <param name="progress">Told which run starts.</param>
    /// <param name="cancel">Checked before every run.</param>
    public static IReadOnlyList<StudyResult> Time(IReadOnlyList<StudyResult> results, Func<string, IBenchTarget> target, int repeats,
        string path, IProgress<string>? progress = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(results);
        ArgumentNullException.ThrowIfNull(target);
        string descriptor = string.Join(";", results.Select(r => string.Create(CultureInfo.InvariantCulture,
            $"{r.Point.Name}|{r.Point.Solver}|{r.Point.Steps}|{r.Point.CacheName}"))) + $";repeats={repeats}";
        var file = ReadTimings(path, descriptor);
        if (file is null)
        {
            var share = new Analysis.CpuShare();
            var measured = MeasureTimings(results, target, repeats, progress, cancel);
            file = new TimingFile(descriptor, measured, share.Share(Environment.ProcessorCount));
            AtomicFile.WriteAllText(path, JsonSerializer.Serialize(file, new JsonSerializerOptions { WriteIndented = true }));
        }
        var rounds = file.Points;
        return [.. results.Select(r =>
        {
            var mine = rounds[r.Point.Name];
            var theirs = rounds[r.Point.Reference ?? r.Point.Name];
            var ratios = theirs.Milliseconds.Zip(mine.Milliseconds, (a, b) => a / b).ToList();
            double perImage = CacheBenchmark.Median(mine.Milliseconds) / mine.ImagesPerRun;
            return r with { Timing = new StudyTiming(perImage, new Interval(CacheBenchmark.Median(ratios), ratios.Min(), ratios.Max()), ratios.Count, mine.ReusedFraction, file.CpuShare) };
        })];
    }

    private sealed record TimedPoint(double[] Milliseconds, int ImagesPerRun, double ReusedFraction);

    private sealed record TimingFile(string Descriptor, Dictionary<string, TimedPoint> Points, double CpuShare);

    private static TimingFile? ReadTimings(string path, string descriptor)
    {
        if (!File.Exists(path)) return null;
        try
        {
            var file = JsonSerializer.Deserialize<TimingFile>(File.ReadAllText(path));
            return file?.Descriptor == descriptor && file.Points is not null ? file : null;
        }
        catch (JsonException)
        {
            return null;   // a damaged file is measured again
        }
    }

    private static Dictionary<string, TimedPoint> MeasureTimings(IReadOnlyList<StudyResult> results, Func<string, IBenchTarget> target,
        int repeats, IProgress<string>? progress, CancellationToken cancel)
    {
        var rounds = new Dictionary<string, TimedPoint>();
        foreach (var group in results.GroupBy(r => r.Point.Solver))
        {
            // The benchmark wants an uncached reference first; the solver's references are.
            var points = group.OrderBy(r => r.Point.Create is null ? 0 : 1).Select(r => r.Point).ToList();
            if (points[0].Create is not null) throw new DiffusionCacheException($"{group.Key}: no uncached point to time against");
            var bench = target(group.Key);
            var configurations = points.Select(p => new CacheConfiguration(p.Name, p.Method, p.Steps,
                p.Create is null ? null : () => p.Create(), double.NaN)).ToList();
            var rows = CacheBenchmark.Run(bench, configurations, repeats, progress, cancel);
            foreach (var (p, row) in points.Zip(rows)) rounds[p.Name] = new([.. row.RoundMilliseconds], bench.ImagesPerRun, row.MeasuredReusedFraction);
        }
        return rounds;
    }

    private static void Check(IReadOnlyList<StudyPoint> points)
    {
        ArgumentNullException.ThrowIfNull(points);
        if (points.Select(p => p.Name).Distinct().Count() != points.Count) throw new DiffusionCacheException("study points need unique names");
        foreach (var p in points.Where(p => p.Reference is not null))
        {
            var r = points.FirstOrDefault(q => q.Name == p.Reference) ?? throw new DiffusionCacheException($"{p.Name}: reference '{p.Reference}' is not a point of the study");
            if (r.Reference is not null || r.Create is not null || r.Solver != p.Solver)
                throw new DiffusionCacheException($"{p.Name}: reference '{r.Name}' must be an uncached point of the same solver that has no reference itself");
        }
    }

    /// <summary>Frees the samples kept in memory.</summary>
    public void Dispose()
    {
        foreach (var t in _images.Values) t.Dispose();
        _images.Clear();
    }
}
