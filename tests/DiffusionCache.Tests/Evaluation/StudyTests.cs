using DiffusionCache.Caching;
using DiffusionCache.Caching.DeepCache;
using DiffusionCache.Evaluation;
using DiffusionCache.Pipelines;
using DiffusionCache.Tests.TestSupport;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Evaluation;

/// <summary>A study on the embedded model with a handful of samples: every point on the same seeds, scored in two
/// spaces and paired against its reference, resumed from the store, and timed once.</summary>
public sealed class StudyTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("study").FullName;
    private readonly ClassConditionalPipeline _pipeline = ClassConditionalPipeline.Load(Repository.Path("models", "fashion-ldm"));
    private readonly MetricNetwork _classifier = ClassifierFolder.LoadNetwork(Repository.Path(ClassifierFolder.DefaultPath));
    private readonly MetricNetwork _second = ClassifierFolder.LoadNetwork(Repository.Path(ClassifierFolder.SecondDefaultPath));
    private readonly List<ReferenceFeatures> _references = [];
    private readonly List<FeatureSpace> _spaces;

    public StudyTests()
    {
        _spaces = [new("classifier", _classifier), new("resnet", _second)];
        using var images = rand([24, 1, 32, 32], generator: new Generator(3)) * 2 - 1;
        foreach (var s in _spaces) _references.Add(ReferenceFeatures.Of(s, images));
    }

    public void Dispose()
    {
        foreach (var r in _references) r.Dispose();
        _classifier.Dispose();
        _second.Dispose();
        _pipeline.Dispose();
        Directory.Delete(_folder, recursive: true);
    }

    private Study NewStudy() => new()
    {
        Pipeline = _pipeline, Model = "fashion", Classifier = _classifier, Spaces = _spaces, References = _references,
        Store = new SampleStore(Path.Combine(_folder, "store")), Samples = 4, Batch = 2, Guidance = 4, Bootstrap = new BootstrapOptions(20),
    };

    private List<StudyPoint> Points() =>
    [
        new("uncached", "fewer steps", "ddim", 4, "none", "no cache", null, null),
        new("2 steps", "fewer steps", "ddim", 2, "none", "no cache", null, "uncached"),
        new("DeepCache N=2", "DeepCache", "ddim", 4, "deepcache:2", "DeepCache 1:2",
            () => new DeepCachePolicy(_pipeline.UNet, DeepCacheSchedule.Uniform(2), 0), "uncached"),
    ];

    [Fact]
    public void Scores_every_point_paired_with_its_reference_and_resumes_from_the_store()
    {
        IReadOnlyList<StudyResult> first;
        using (var study = NewStudy()) first = study.Measure(Points());
        Assert.Equal(["uncached", "2 steps", "DeepCache N=2"], first.Select(r => r.Point.Name));
        Assert.Null(first[0].VersusReference);
        Assert.True(double.IsPositiveInfinity(first[0].Psnr));
        Assert.All(first.Skip(1), r =>
        {
            Assert.NotNull(r.VersusReference);
            Assert.True(r.Psnr is > 0 and < 200);
            Assert.Equal(["classifier", "resnet"], r.Quality.Spaces.Select(s => s.Space));
            Assert.Equal(4, r.Quality.Samples);
        });

        // A second study finds every batch stored: the same samples, so the same figures, with no sampling.
        var policyMade = 0;
        var points = Points().Select(p => p.Create is null ? p : p with { Create = () => { policyMade++; return p.Create(); } }).ToList();
        using var again = NewStudy();
        var second = again.Measure(points);
        Assert.Equal(0, policyMade);
        Assert.Equal(first.Select(r => r.Quality.Spaces[1].Fid.Estimate), second.Select(r => r.Quality.Spaces[1].Fid.Estimate));
        Assert.Equal(first[2].Psnr, second[2].Psnr);
    }

    [Fact]
    public void Keeps_each_points_scores_beside_its_samples_and_reads_them_instead_of_scoring_again()
    {
        IReadOnlyList<StudyResult> first;
        using (var study = NewStudy()) first = study.Measure(Points());
        var files = Directory.GetFiles(Path.Combine(_folder, "store"), "quality-*.json", SearchOption.AllDirectories);
        Assert.Equal(3, files.Length);

        // The stored report is what a second study reads: a tampered estimate comes back, and the paired comparison
        // drawn from stored replicates is the one drawn from fresh ones.
        string twoSteps;
        using (var study = NewStudy()) twoSteps = Path.Combine(_folder, "store", study.Setting(Points()[1]).Key);
        string file = Directory.GetFiles(twoSteps, "quality-*.json").Single();
        string fid = first[1].Quality.Spaces[0].Fid.Estimate.ToString("R", System.Globalization.CultureInfo.InvariantCulture);
        File.WriteAllText(file, File.ReadAllText(file).Replace($"\"Estimate\":{fid}", "\"Estimate\":123.5", StringComparison.Ordinal));
        IReadOnlyList<StudyResult> second;
        using (var study = NewStudy()) second = study.Measure(Points());
        Assert.Equal(123.5, second[1].Quality.Spaces[0].Fid.Estimate);
        Assert.Equal(first[2].VersusReference!.Differences.Select(d => d.Difference), second[2].VersusReference!.Differences.Select(d => d.Difference));

        // Another scoring setup (here the bootstrap) scores afresh.
        using var resampled = new Study
        {
            Pipeline = _pipeline, Model = "fashion", Classifier = _classifier, Spaces = _spaces, References = _references,
            Store = new SampleStore(Path.Combine(_folder, "store")), Samples = 4, Batch = 2, Guidance = 4, Bootstrap = new BootstrapOptions(21),
        };
        var third = resampled.Measure(Points());
        Assert.Equal(first[1].Quality.Spaces[0].Fid.Estimate, third[1].Quality.Spaces[0].Fid.Estimate);
        Assert.Equal(6, Directory.GetFiles(Path.Combine(_folder, "store"), "quality-*.json", SearchOption.AllDirectories).Length);
    }

    [Fact]
    public void Times_once_and_reads_the_saved_timings_after()
    {
        using var study = NewStudy();
        var measured = study.Measure(Points());
        string path = Path.Combine(_folder, "timing.json");
        int targets = 0;
        var timed = Study.Time(measured, solver => { targets++; return new FixedTarget(_pipeline, solver); }, 2, path);
        Assert.Equal(1, targets);   // one benchmark per solver
        Assert.Equal(new Interval(1, 1, 1), timed[0].Timing!.Speedup);   // the reference against itself, round by round
        Assert.All(timed, r => Assert.Equal(2, r.Timing!.Rounds));
        using (var policy = Points()[2].Create!())   // the warm-up run's own statistics
        {
            new FixedTarget(_pipeline, "ddim").Run(4, policy).Dispose();
            Assert.Equal(policy.Statistics.ReusedFraction, timed[2].Timing!.ReusedFraction);
            Assert.True(timed[2].Timing!.ReusedFraction > 0);
        }

        var again = Study.Time(measured, solver => { targets++; return new FixedTarget(_pipeline, solver); }, 2, path);
        Assert.Equal(1, targets);
        Assert.Equal(timed.Select(r => r.Timing), again.Select(r => r.Timing));
        Study.Time(measured, solver => { targets++; return new FixedTarget(_pipeline, solver); }, 3, path);   // other rounds: measured anew
        Assert.Equal(2, targets);
    }

    [Fact]
    public void Refuses_a_reference_that_is_not_an_uncached_point_of_the_study()
    {
        using var study = NewStudy();
        var points = Points();
        points[1] = points[1] with { Reference = "missing" };
        Assert.Contains("not a point", Assert.Throws<DiffusionCacheException>(() => study.Measure(points)).Message);
        points = Points();
        points[1] = points[1] with { Reference = "DeepCache N=2" };
        Assert.Contains("uncached point", Assert.Throws<DiffusionCacheException>(() => study.Measure(points)).Message);
    }

    private sealed class FixedTarget(ClassConditionalPipeline pipeline, string solver) : IBenchTarget
    {
        public int ImagesPerRun => 1;
        public double Range(Tensor reference) => 2;
        public Tensor Run(int steps, ICachePolicy? policy)
        {
            using var scheduler = pipeline.CreateScheduler(solver);
            return pipeline.Generate(scheduler, [1L], 0, steps, 4, policy);
        }
    }
}
