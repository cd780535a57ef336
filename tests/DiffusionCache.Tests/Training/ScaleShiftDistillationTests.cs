using DiffusionCache.Caching.BlockCaching;
using DiffusionCache.Pipelines;
using DiffusionCache.Schedulers;
using DiffusionCache.Tests.TestSupport;
using DiffusionCache.Training;
using static DiffusionCache.Tests.Caching.BlockCaching.BlockCacheFixtures;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Training;

public class ScaleShiftDistillationTests
{
    private const int Steps = 8;

    /// <summary>Aggressive caching: every transformer computes at steps 0 and 4 only.</summary>
    private static IReadOnlyList<int> Rare(int i) => [0, 4];

    private static SamplingRequest Requests(Tensor indices, Generator generator)
    {
        var g = new Generator(21);
        var contexts = randn([4, 6, 16], generator: g);
        var picked = contexts.index_select(0, indices % 4);
        return Request(Steps) with { Batch = (int)indices.shape[0], Context = picked, UnconditionalContext = zeros_like(picked) };
    }

    [Fact]
    public void Distillation_brings_the_cached_student_closer_to_the_teacher_and_leaves_the_unet_alone()
    {
        using var unet = Model();
        var schedule = Schedule(unet, Steps, Rare);
        using var adjustment = ScaleShiftAdjustment.For(unet, schedule, embeddingDim: 16);
        var before = unet.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        var config = SchedulerConfig();
        double Loss()
        {
            using var policy = new BlockCachePolicy(unet, schedule, Solver, adjustment: adjustment);
            using var scheduler = SchedulerFactory.Create(config);
            using var indices = arange(4L);
            var request = Requests(indices, new Generator(1));
            using var g = new Generator(77);
            using var grad = enable_grad();
            double value = ScaleShiftDistillation.Trajectory(unet, scheduler, policy, request, g);
            adjustment.zero_grad();
            return value;
        }

        double initial = Loss();
        using var dir = new TempFolder();
        var options = new TrainingOptions
        {
            CheckpointDir = dir.File("ck"), TotalSteps = 30, BatchSize = 4, LearningRate = 1e-2, WarmupSteps = 1, EmaDecay = 0.5,
            CheckpointEvery = 100,
        };
        using (var ema = ScaleShiftDistillation.Train(unet, schedule, config, adjustment, Requests, 8, options))
            ema.CopyTo(adjustment);
        double trained = Loss();

        Assert.True(initial > 0);
        Assert.True(trained < 0.9 * initial, $"block loss {initial:G4} -> {trained:G4}");
        Assert.All(unet.parameters(), p => Assert.True(p.requires_grad));   // frozen only while training
        foreach (var (name, value) in unet.state_dict()) Assert.True(value.equal(before[name]).all().item<bool>(), name);
        Assert.Contains(adjustment.parameters(), p => p.abs().sum().item<float>() > 0);
    }
}
