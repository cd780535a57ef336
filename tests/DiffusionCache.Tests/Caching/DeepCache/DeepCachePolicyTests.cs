using DiffusionCache.Caching;
using DiffusionCache.Caching.DeepCache;
using DiffusionCache.Models.Loading;
using DiffusionCache.Models.Seam;
using DiffusionCache.Models.UNets;
using DiffusionCache.Pipelines;
using DiffusionCache.Schedulers;
using DiffusionCache.Tests.Models;
using DiffusionCache.Tests.TestSupport;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Caching.DeepCache;

public class DeepCachePolicyTests
{
    /// <summary>The 3-level SD-style model of the DeepCache golden data (random seeded weights).</summary>
    private static DiffusionUNet TinySd() => UNetLoader.Load(Golden.Path("deepcache", "models", "tiny-sd-unet"));

    /// <summary>The 2-level DDPM-family model (self-attention, no cross-attention).</summary>
    private static DiffusionUNet Ddpm() => UNetLoader.Load(TinyModels.GoldenUNet("ddpm-2lvl"));

    private static IScheduler Scheduler(string className = SchedulerConfig.Ddim) =>
        SchedulerFactory.Create(SchedulerConfig.Defaults(className));

    private static SamplingRequest Request(DiffusionUNet unet, int steps = 6, long seed = 5, bool guidance = true)
    {
        var g = new Generator(17);
        var context = unet.ContextDim is int d ? randn([2, 6, d], generator: g) : null;
        return new SamplingRequest
        {
            Steps = steps,
            Batch = 2,
            Height = unet.SampleSize,
            Width = unet.SampleSize,
            Context = context,
            UnconditionalContext = guidance && context is not null ? zeros_like(context) : null,
            GuidanceScale = guidance && context is not null ? 4.0 : 1.0,
            Seed = seed,
        };
    }

    private static bool BitwiseEqual(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.equal(b).all().item<bool>();

    [Fact]
    public void IntervalOneIsBitwiseEqualToUncachedSampling()
    {
        using var unet = TinySd();
        using var s = Scheduler();
        var request = Request(unet);
        using var plain = DiffusionSampler.Sample(unet, s, request);
        using var policy = new DeepCachePolicy(unet, DeepCacheSchedule.Uniform(1), 0);
        using var cached = CachedSampling.Sample(unet, s, request, policy);
        Assert.True(BitwiseEqual(plain, cached));
        Assert.All(policy.Log, r => Assert.True(r.Full));
        Assert.Equal(0, policy.Statistics.TotalReused);
        Assert.Equal(0, policy.Statistics.PeakCacheBytes);   // nothing is stored when no partial step follows
    }

    [Fact]
    public void PartialStepsReuseTheDeepFeaturesAndChangeTheResult()
    {
        using var unet = TinySd();
        using var s = Scheduler();
        var request = Request(unet, steps: 10);
        using var plain = DiffusionSampler.Sample(unet, s, request);
        using var policy = new DeepCachePolicy(unet, DeepCacheSchedule.Uniform(5), 0);
        using var cached = CachedSampling.Sample(unet, s, request, policy);
        Assert.True(cached.isfinite().all().item<bool>());
        Assert.False(BitwiseEqual(plain, cached));
        Assert.Equal([0, 5], policy.Log.Where(r => r.Full).Select(r => r.Step));

        // Per unit: the mid block runs on the 2 full steps only; the last up layer always runs.
        Assert.Equal((2L, 8L), policy.Statistics["mid_block"]);
        Assert.Equal((2L, 8L), policy.Statistics["down_blocks.0.resnets.0"]);
        Assert.Equal((10L, 0L), policy.Statistics["up_blocks.2.resnets.2"]);
        Assert.Equal((10L, 0L), policy.Statistics["up_blocks.2.attentions.2"]);
        Assert.True(policy.Statistics.PeakCacheBytes > 0);
        Assert.Equal(policy.Plan.Units.Count, policy.Statistics.Blocks.Count);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(4)]
    [InlineData(8)]
    public void SecondGenerationEqualsTheFirst(int branch)
    {
        using var unet = TinySd();
        using var s = Scheduler();
        var request = Request(unet, steps: 7);
        using var policy = new DeepCachePolicy(unet, DeepCacheSchedule.NonUniform(3, 2, 1.4), branch);
        using var first = CachedSampling.Sample(unet, s, request, policy);
        using var other = CachedSampling.Sample(unet, s, request with { Seed = 99 }, policy);
        using var second = CachedSampling.Sample(unet, s, request, policy);
        Assert.True(BitwiseEqual(first, second));
        Assert.False(BitwiseEqual(first, other));
        using var fresh = new DeepCachePolicy(unet, DeepCacheSchedule.NonUniform(3, 2, 1.4), branch);
        using var third = CachedSampling.Sample(unet, s, request, fresh);
        Assert.True(BitwiseEqual(first, third));
        Assert.Empty(unet.Seam.Hooks);
    }

    [Theory]
    [InlineData(SchedulerConfig.Ddim)]
    [InlineData(SchedulerConfig.DpmSolverMultistep)]
    [InlineData(SchedulerConfig.EulerDiscrete)]
    [InlineData(SchedulerConfig.Pndm)]
    public void WorksWithEverySolver(string className)
    {
        using var unet = TinySd();
        using var s = Scheduler(className);
        var request = Request(unet, steps: 6);
        using var plain = DiffusionSampler.Sample(unet, s, request);
        using var policy = new DeepCachePolicy(unet, DeepCacheSchedule.Uniform(3), 2);
        using var cached = CachedSampling.Sample(unet, s, request, policy);
        using var again = CachedSampling.Sample(unet, s, request, policy);
        Assert.True(cached.isfinite().all().item<bool>());
        Assert.True(BitwiseEqual(cached, again));
        Assert.False(BitwiseEqual(plain, cached));
        // One record per model call (PNDM makes more calls than steps); full iff i is in interval_seq.
        s.SetTimesteps(request.Steps);
        Assert.Equal(s.Timesteps.Count, policy.Log.Count);
        Assert.Equal(policy.Log.Select(r => r.Step is 0 or 3), policy.Log.Select(r => r.Full));
        Assert.True(policy.Statistics.TotalReused > 0);
        Assert.Equal(0, policy.CacheBytes);
    }

    [Fact]
    public void WorksOnTheDdpmFamilyUNet2DModel()
    {
        using var unet = Ddpm();
        Assert.IsType<UNet2DModel>(unet);
        using var s = Scheduler(SchedulerConfig.Ddpm);
        var request = Request(unet, steps: 6);
        using var plain = DiffusionSampler.Sample(unet, s, request);
        var plan = DeepCachePlan.For(unet, 0);
        Assert.Equal(2, plan.Levels);
        Assert.Equal(5, plan.MaxBranch);
        // Branch 0: only the last up layer (a resnet of UpBlock2D at level 0) and conv_in/out are recomputed.
        Assert.Equal(["up_blocks.1.resnets.1"], plan.RecomputedUnits);
        Assert.Contains("down_blocks.1.attentions.0", plan.ReusedUnits);
        Assert.Contains("up_blocks.0.attentions.1", plan.ReusedUnits);
        for (int branch = 0; branch <= plan.MaxBranch; branch++)
        {
            using var policy = new DeepCachePolicy(unet, DeepCacheSchedule.Uniform(2), branch);
            using var cached = CachedSampling.Sample(unet, s, request, policy);
            Assert.True(cached.isfinite().all().item<bool>(), $"branch {branch}");
            Assert.False(BitwiseEqual(plain, cached), $"branch {branch}");
            var partial = policy.Log.First(r => !r.Full);
            Assert.Equal(policy.Plan.ReusedUnits.Order(), partial.Reused.Order());
            Assert.Contains("mid_block", partial.Reused);
            Assert.DoesNotContain("mid_block", partial.Computed);
            Assert.Contains("conv_in", partial.Computed);
        }
    }

    [Fact]
    public void DeeperBranchesReuseLess()
    {
        using var unet = TinySd();
        var reused = Enumerable.Range(0, 9).Select(k => DeepCachePlan.For(unet, k).ReusedUnits.Count).ToList();
        Assert.Equal(reused.OrderDescending(), reused);
        Assert.Equal(["mid_block"], DeepCachePlan.For(unet, 8).ReusedUnits);
        Assert.Equal(["up_blocks.2.resnets.2", "up_blocks.2.attentions.2"], DeepCachePlan.For(unet, 0).RecomputedUnits);
    }

    [Theory]
    [InlineData(9)]
    [InlineData(-1)]
    [InlineData(100)]
    public void BranchTheModelDoesNotHaveIsRefusedWithTheValidRange(int branch)
    {
        using var unet = TinySd();
        var e = Assert.Throws<DiffusionCacheException>(() => new DeepCachePolicy(unet, DeepCacheSchedule.Uniform(2), branch));
        Assert.Contains($"cache branch {branch}", e.Message);
        Assert.Contains("0..8", e.Message);
        Assert.Contains("UNet2DConditionModel", e.Message);
        using var ddpm = Ddpm();
        var e2 = Assert.Throws<DiffusionCacheException>(() => new DeepCachePolicy(ddpm, DeepCacheSchedule.Uniform(2), 6));
        Assert.Contains("0..5", e2.Message);
    }

    [Fact]
    public void BadScheduleIsRefusedBeforeTheModelRuns()
    {
        using var unet = TinySd();
        using var s = Scheduler();
        var counter = new CallCounter();
        using var attached = unet.Seam.Attach(counter);
        using var policy = new DeepCachePolicy(unet, DeepCacheSchedule.NonUniform(2, 30, 1.4), 0);
        var e = Assert.Throws<DiffusionCacheException>(() => CachedSampling.Sample(unet, s, Request(unet, steps: 10), policy));
        Assert.Contains("center 30", e.Message);
        Assert.Equal(0, counter.Calls);
    }

    [Fact]
    public void CacheIsFreedWhenTheGenerationEnds()
    {
        using var unet = TinySd();
        using var s = Scheduler();
        using var policy = new DeepCachePolicy(unet, DeepCacheSchedule.Uniform(3), 1);
        var probe = new CacheProbe(policy);
        using var x = CachedSampling.Sample(unet, s, Request(unet, steps: 7), policy, [probe]);
        // Held during the partial steps, with the whole (CFG) batch; nothing after the generation.
        Assert.All(probe.BytesAfterStep.Take(6), b => Assert.True(b > 0));
        Assert.Equal(0, probe.BytesAfterStep[6]);   // the last full step has no partial step to feed
        Assert.Equal(probe.BytesAfterStep.Max(), policy.Statistics.PeakCacheBytes);
        Assert.Equal(0, policy.CacheBytes);
        Assert.Equal(0, policy.CachedEntries);
        Assert.Equal(policy.Plan.CachedSites.Count, probe.EntriesAfterStep[0]);
        Assert.Equal(0, probe.BytesAfterEnd);
    }

    [Fact]
    public void CacheIsFreedWhenTheGenerationIsCancelled()
    {
        using var unet = TinySd();
        using var s = Scheduler();
        using var policy = new DeepCachePolicy(unet, DeepCacheSchedule.Uniform(4), 0);
        using var cts = new CancellationTokenSource();
        var stop = new CancelAfter(2, cts);
        Assert.Throws<OperationCanceledException>(() => CachedSampling.Sample(unet, s, Request(unet, steps: 8), policy, [stop], cts.Token));
        Assert.True(policy.Statistics.PeakCacheBytes > 0);
        Assert.Equal(0, policy.CacheBytes);
        Assert.Equal(0, policy.CachedEntries);
        Assert.Empty(unet.Seam.Hooks);
    }

    [Fact]
    public void AttachedOutsideASamplingLoopItIsAPlainForwardPass()
    {
        using var unet = TinySd();
        var input = TinyModels.Input(unet);
        using var plain = unet.Forward(input);
        using var policy = new DeepCachePolicy(unet, DeepCacheSchedule.Uniform(3), 0);
        using (unet.Seam.Attach(policy))
        {
            using var hooked = unet.Forward(input);
            Assert.True(BitwiseEqual(plain, hooked));
        }
        Assert.Equal(0, policy.CachedEntries);
    }

    [Fact]
    public void DisposedPolicyRefusesANewGeneration()
    {
        using var unet = TinySd();
        using var s = Scheduler();
        var policy = new DeepCachePolicy(unet, DeepCacheSchedule.Uniform(2), 0);
        policy.Dispose();
        Assert.Throws<ObjectDisposedException>(() => CachedSampling.Sample(unet, s, Request(unet, steps: 2), policy));
        Assert.Equal("DeepCache uniform 1:2 branch 0", policy.Name);
    }

    private sealed class CallCounter : IBlockHook
    {
        public int Calls { get; private set; }
        public BlockOutput Run(BlockCall call, Func<BlockOutput> compute)
        {
            Calls++;
            return compute();
        }
    }

    private sealed class CacheProbe(DeepCachePolicy policy) : IStepObserver
    {
        public List<long> BytesAfterStep { get; } = [];
        public List<int> EntriesAfterStep { get; } = [];
        public long BytesAfterEnd { get; private set; } = -1;

        public void EndStep(StepInfo step, Tensor latents)
        {
            BytesAfterStep.Add(policy.CacheBytes);
            EntriesAfterStep.Add(policy.CachedEntries);
        }

        public void EndGeneration() => BytesAfterEnd = policy.CacheBytes;
    }

    private sealed class CancelAfter(int n, CancellationTokenSource cts) : IStepObserver
    {
        private int _steps;
        public void EndStep(StepInfo step, Tensor latents)
        {
            if (++_steps == n) cts.Cancel();
        }
    }
}
