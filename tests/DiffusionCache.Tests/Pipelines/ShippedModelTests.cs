using DiffusionCache.Caching.BlockCaching;
using DiffusionCache.Evaluation;
using DiffusionCache.Pipelines;
using DiffusionCache.Schedulers;
using DiffusionCache.Tests.TestSupport;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Pipelines;

/// <summary>The embedded model committed under models/ loads, samples through the one loop, and its shipped cache
/// schedules fit it.</summary>
public class ShippedModelTests
{
    private static string Model => Repository.Path("models", "fashion-ldm");

    [Fact]
    public void GeneratesImagesOfEveryClass()
    {
        using var pipeline = ClassConditionalPipeline.Load(Model);
        Assert.Equal(10, pipeline.NumLabels);
        using var scheduler = pipeline.CreateScheduler("ddim");
        var request = pipeline.Request([0, 9], seed: 1, steps: 2, guidance: 4);
        using var images = pipeline.Generate(scheduler, request);
        Assert.Equal([2L, 1, 32, 32], images.shape);
        Assert.True(images.isfinite().all().item<bool>());
        Assert.True(images.min().item<float>() >= -1 && images.max().item<float>() <= 1);
    }

    [Theory]
    [InlineData(50)]
    [InlineData(20)]
    public void ShippedSchedulesFitTheModel(int steps)
    {
        using var pipeline = ClassConditionalPipeline.Load(Model);
        var schedule = CacheSchedule.Load(Path.Combine(Model, "cache", $"schedule-ddim-{steps}.json"));
        schedule.Validate(pipeline.UNet, Solvers.For("ddim", pipeline.SchedulerConfig).ClassName, steps);
        Assert.InRange(schedule.SkippedFraction, 0.01, 0.99);
    }

    [Fact]
    public void MetricClassifierLoads()
    {
        using var classifier = ClassifierFolder.Load(Repository.Path("models", "fashion-classifier"));
        using var logits = classifier.call(zeros(2, 1, 32, 32));
        Assert.Equal([2L, 10], logits.shape);
    }

    [Fact]
    public void SecondMetricNetworkLoads()
    {
        string dir = Repository.Path("models", "fashion-resnet");
        using var network = ClassifierFolder.LoadNetwork(dir);
        Assert.IsType<FashionResNet>(network);
        Assert.InRange(new FileInfo(Path.Combine(dir, "model.safetensors")).Length, 1, 3_000_000);
        using var features = network.Features(zeros(2, 1, 32, 32));
        Assert.Equal([2L, FashionResNet.FeatureDim], features.shape);
        // Its BatchNorm statistics were recalibrated after training, not left at their initial values.
        Assert.Contains(network.named_buffers(), b => b.name.EndsWith("running_var") && !b.buffer.eq(1).all().item<bool>());
    }
}
