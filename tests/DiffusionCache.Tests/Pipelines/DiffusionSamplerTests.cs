using DiffusionCache.Models.UNets;
using DiffusionCache.Pipelines;
using DiffusionCache.Schedulers;
using DiffusionCache.Tests.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Pipelines;

public class DiffusionSamplerTests
{
    private static IScheduler Ddim() => SchedulerFactory.Create(SchedulerConfig.Defaults("DDIMScheduler"));

    private static SamplingRequest Request(DiffusionUNet unet, int steps = 4, long seed = 3, double guidance = 3.0)
    {
        var g = new Generator(11);
        return new SamplingRequest
        {
            Steps = steps,
            Batch = 2,
            Height = 8,
            Width = 8,
            Context = randn([2, 5, unet.ContextDim!.Value], generator: g),
            UnconditionalContext = randn([2, 5, unet.ContextDim!.Value], generator: g),
            GuidanceScale = guidance,
            Seed = seed,
        };
    }

    [Theory]
    [InlineData("DDIMScheduler")]
    [InlineData("DDPMScheduler")]
    [InlineData("PNDMScheduler")]
    [InlineData("DPMSolverMultistepScheduler")]
    [InlineData("EulerDiscreteScheduler")]
    public void SameSeedGivesBitIdenticalResults(string scheduler)
    {
        using var unet = TinyModels.Sd1();
        using var s = SchedulerFactory.Create(SchedulerConfig.Defaults(scheduler));
        var request = Request(unet);
        using var a = DiffusionSampler.Sample(unet, s, request);
        using var b = DiffusionSampler.Sample(unet, s, request);
        using var c = DiffusionSampler.Sample(unet, s, request with { Seed = 4 });
        Assert.True(a.equal(b).all().item<bool>());
        Assert.False(a.allclose(c));
        Assert.True(a.isfinite().all().item<bool>());
    }

    [Fact]
    public void ObserversSeeEveryStepInOrder()
    {
        using var unet = TinyModels.Sd1();
        using var s = Ddim();
        var log = new Log();
        using var x = DiffusionSampler.Sample(unet, s, Request(unet, steps: 5), [log]);
        Assert.Equal(["begin", "0", "p0", "e0", "1", "p1", "e1", "2", "p2", "e2", "3", "p3", "e3", "4", "p4", "e4", "end"], log.Events);
    }

    private sealed class Log : IStepObserver
    {
        public List<string> Events { get; } = [];
        public void BeginGeneration(SamplingRequest request, IReadOnlyList<double> timesteps) => Events.Add("begin");
        public void BeginStep(StepInfo step) => Events.Add(step.Index.ToString());
        public void OnPrediction(StepInfo step, Tensor prediction) => Events.Add($"p{step.Index}");
        public void EndStep(StepInfo step, Tensor latents) => Events.Add($"e{step.Index}");
        public void EndGeneration() => Events.Add("end");
    }

    [Fact]
    public void GuidanceOneEqualsTheConditionalPrediction()
    {
        // u + 1 * (c - u) = c: guided sampling at scale 1 matches sampling without the unconditional half.
        using var unet = TinyModels.Sd1();
        using var s = Ddim();
        var request = Request(unet, guidance: 1.0);
        using var guided = DiffusionSampler.Sample(unet, s, request);
        using var plain = DiffusionSampler.Sample(unet, s, request with { UnconditionalContext = null });
        Assert.True(guided.allclose(plain, rtol: 1e-4, atol: 1e-5));
    }

    [Fact]
    public void CancellationStopsBetweenSteps()
    {
        using var unet = TinyModels.Sd1();
        using var s = Ddim();
        using var cts = new CancellationTokenSource();
        var stopper = new StopAfter(2, cts);
        Assert.Throws<OperationCanceledException>(() => DiffusionSampler.Sample(unet, s, Request(unet, steps: 10), [stopper], cts.Token));
        Assert.Equal(2, stopper.Steps);
        Assert.True(stopper.Ended);
    }

    private sealed class StopAfter(int n, CancellationTokenSource cts) : IStepObserver
    {
        public int Steps { get; private set; }
        public bool Ended { get; private set; }
        public void EndStep(StepInfo step, Tensor latents)
        {
            if (++Steps == n) cts.Cancel();
        }
        public void EndGeneration() => Ended = true;
    }

    [Fact]
    public void MemoryStaysFlatOverThousandsOfSteps()
    {
        // Every step's tensors live in that step's dispose scope: the number of live tensors after a long run is
        // the same as after a short one.
        using var unet = new UNet2DConditionModel(TinyModels.SdConfig());
        using var s = SchedulerFactory.Create(SchedulerConfig.Defaults("DDPMScheduler"));
        var request = Request(unet) with { Height = 4, Width = 4 };
        long Live() => DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        using (DiffusionSampler.Sample(unet, s, request with { Steps = 10 })) { }
        long before = Live();
        using (DiffusionSampler.Sample(unet, s, request with { Steps = 1000 })) { }
        Assert.Equal(before, Live());
    }

    [Theory]
    [InlineData(0, 3.0, "steps")]
    [InlineData(1001, 3.0, "num_train_timesteps")]
    [InlineData(10, double.NaN, "guidance")]
    [InlineData(10, -1.0, "guidance")]
    public void BadInputIsRefusedBeforeAnyWork(int steps, double guidance, string word)
    {
        using var unet = TinyModels.Sd1();
        using var s = Ddim();
        var counter = new Log();
        var e = Assert.ThrowsAny<DiffusionCacheException>(() =>
            DiffusionSampler.Sample(unet, s, Request(unet, steps: steps, guidance: guidance), [counter]));
        Assert.Contains(word, e.Message);
        Assert.Empty(counter.Events);
    }

    [Fact]
    public void MissingContextIsRefused()
    {
        using var unet = TinyModels.Sd1();
        using var s = Ddim();
        Assert.Throws<DiffusionCacheException>(() => DiffusionSampler.Sample(unet, s, Request(unet) with { Context = null, UnconditionalContext = null }));
    }
}
