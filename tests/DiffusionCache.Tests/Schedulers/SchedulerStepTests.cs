using DiffusionCache.Parity;
using DiffusionCache.Schedulers;
using TorchSharp;

namespace DiffusionCache.Tests.Schedulers;

public sealed class SchedulerStepTests
{
    private static readonly long[] Shape = [2, 3, 4, 4];

    public static TheoryData<string, int> Configs => new()
    {
        { """{"_class_name": "DDPMScheduler", "timestep_spacing": "linspace"}""", 10 },
        { """{"_class_name": "DDIMScheduler", "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}""", 12 },
        { """{"_class_name": "PNDMScheduler", "skip_prk_steps": true, "steps_offset": 1}""", 10 },
        { """{"_class_name": "PNDMScheduler", "skip_prk_steps": false, "prediction_type": "v_prediction"}""", 8 },
        { """{"_class_name": "DPMSolverMultistepScheduler", "solver_order": 3}""", 9 },
        { """{"_class_name": "DPMSolverMultistepScheduler", "solver_order": 2, "use_karras_sigmas": true, "solver_type": "heun"}""", 7 },
        { """{"_class_name": "EulerDiscreteScheduler", "prediction_type": "v_prediction"}""", 9 },
    };

    /// <summary>One generation with the fake-v1 model; DDPM (and DDIM with eta) draw from a generator seeded
    /// with <paramref name="seed"/>. Stops after <paramref name="stopAfter"/> steps when given.</summary>
    private static float[] Generate(IScheduler s, long seed, int? stopAfter = null)
    {
        using var scope = torch.NewDisposeScope();
        using var generator = new torch.Generator((ulong)seed);
        using var initial = new torch.Generator(42);
        var x = torch.randn(Shape, generator: initial) * s.InitNoiseSigma;
        var noise = StepNoise.FromGenerator(generator);
        int steps = stopAfter ?? s.Timesteps.Count;
        for (int i = 0; i < steps; i++)
        {
            var m = SchedulerParity.FakeV1(s.ScaleModelInput(x, i), s.Timesteps[i], s.Config.NumTrainTimesteps);
            x = s.Step(m, i, x, noise);
        }
        return x.data<float>().ToArray();
    }

    private static IScheduler Build(string json, int steps)
    {
        var s = SchedulerFactory.FromJson(System.Text.Json.JsonDocument.Parse(json).RootElement);
        s.SetTimesteps(steps);
        return s;
    }

    [Theory]
    [MemberData(nameof(Configs))]
    public void ResetMakesTheSecondGenerationIdenticalToTheFirst(string json, int steps)
    {
        using var s = Build(json, steps);
        var first = Generate(s, seed: 7);
        Assert.All(first, v => Assert.True(float.IsFinite(v)));

        s.Reset();
        Assert.Equal(first, Generate(s, seed: 7));

        // a new generation without Reset is refused, not silently run on stale state
        Assert.Throws<DiffusionCacheException>(() => Generate(s, seed: 7));

        // abandoned half-way, then reset: no state leaks into the next generation
        s.Reset();
        Generate(s, seed: 3, stopAfter: s.Timesteps.Count / 2);
        s.Reset();
        Assert.Equal(first, Generate(s, seed: 7));

        // SetTimesteps also starts afresh, and a fresh scheduler agrees
        s.SetTimesteps(steps);
        Assert.Equal(first, Generate(s, seed: 7));
        using var fresh = Build(json, steps);
        Assert.Equal(first, Generate(fresh, seed: 7));
    }

    [Theory]
    [MemberData(nameof(Configs))]
    public void StepsMustComeInLoopOrder(string json, int steps)
    {
        using var s = Build(json, steps);
        using var x = torch.zeros(Shape);
        using var noise = torch.zeros(Shape);
        using var step0 = s.Step(x, 0, x, StepNoise.FromTensor(noise));
        var e = Assert.Throws<DiffusionCacheException>(() => s.Step(x, 2, x, StepNoise.FromTensor(noise)));
        Assert.Contains("loop order", e.Message);
        Assert.Throws<DiffusionCacheException>(() => s.Step(x, s.Timesteps.Count, x));
        Assert.Throws<DiffusionCacheException>(() => s.ScaleModelInput(x, -1));
    }

    [Fact]
    public void SteppingBeforeSetTimestepsIsRefused()
    {
        using var s = SchedulerFactory.Create(SchedulerConfig.Defaults("DDIMScheduler"));
        using var x = torch.zeros(Shape);
        Assert.Contains("SetTimesteps", Assert.Throws<DiffusionCacheException>(() => s.Step(x, 0, x)).Message);
    }

    [Fact]
    public void DdpmWithTheSameSeedDrawsTheSameNoise()
    {
        const string json = """{"_class_name": "DDPMScheduler", "steps_offset": 1}""";
        using var a = Build(json, 20);
        using var b = Build(json, 20);
        var first = Generate(a, seed: 1234);
        Assert.Equal(first, Generate(b, seed: 1234));
        b.Reset();
        Assert.NotEqual(first, Generate(b, seed: 1235));
    }

    [Fact]
    public void DdpmGeneratorNoiseIsTorchRandnInStepOrderAndNoneAtTimestepZero()
    {
        // linspace spacing ends at t = 0: 10 steps, 9 noise draws.
        const string json = """{"_class_name": "DDPMScheduler", "timestep_spacing": "linspace"}""";
        using var fromGenerator = Build(json, 10);
        using var fromTensors = Build(json, 10);
        Assert.Equal(0, fromGenerator.Timesteps[^1]);
        var expected = Generate(fromGenerator, seed: 99);

        using var scope = torch.NewDisposeScope();
        using var initial = new torch.Generator(42);
        using var g = new torch.Generator(99);
        var x = torch.randn(Shape, generator: initial);
        for (int i = 0; i < fromTensors.Timesteps.Count; i++)
        {
            var m = SchedulerParity.FakeV1(x, fromTensors.Timesteps[i], 1000);
            var noise = fromTensors.Timesteps[i] > 0 ? StepNoise.FromTensor(torch.randn(Shape, generator: g)) : null;
            x = fromTensors.Step(m, i, x, noise);
        }
        Assert.Equal(expected, x.data<float>().ToArray());
    }

    [Fact]
    public void DdpmNullVarianceTypeBehavesAsFixedSmallAndFixedLargeDiffers()
    {
        using var small = Build("""{"_class_name": "DDPMScheduler", "variance_type": "fixed_small"}""", 10);
        using var none = Build("""{"_class_name": "DDPMScheduler", "variance_type": null}""", 10);
        using var large = Build("""{"_class_name": "DDPMScheduler", "variance_type": "fixed_large"}""", 10);
        var expected = Generate(small, seed: 5);
        Assert.Equal(expected, Generate(none, seed: 5));
        Assert.NotEqual(expected, Generate(large, seed: 5));
    }

    [Fact]
    public void StochasticStepsRefuseToRunWithoutNoise()
    {
        using var x = torch.ones(Shape);
        using var ddpm = Build("""{"_class_name": "DDPMScheduler"}""", 10);
        Assert.Contains("StepNoise", Assert.Throws<DiffusionCacheException>(() => ddpm.Step(x, 0, x)).Message);

        using var ddim = (DdimScheduler)Build("""{"_class_name": "DDIMScheduler"}""", 10);
        using var deterministic = ddim.Step(x, 0, x);
        ddim.Reset();
        ddim.Eta = 0.5;
        Assert.Contains("StepNoise", Assert.Throws<DiffusionCacheException>(() => ddim.Step(x, 0, x)).Message);
        Assert.Throws<DiffusionCacheException>(() => ddim.Eta = -1);

        using var wrongShape = torch.zeros(1, 3, 4, 4);
        Assert.Contains("noise shape", Assert.Throws<DiffusionCacheException>(() =>
            ddim.Step(x, 0, x, StepNoise.FromTensor(wrongShape))).Message);
    }

    [Fact]
    public void InputsAreNeitherDisposedNorModified()
    {
        using var s = Build("""{"_class_name": "PNDMScheduler", "skip_prk_steps": true}""", 5);
        using var x = torch.ones(Shape);
        using var m = torch.full(Shape, 0.5f);
        for (int i = 0; i < s.Timesteps.Count; i++)
        {
            using var scaled = s.ScaleModelInput(x, i);
            using var next = s.Step(m, i, x);
        }
        Assert.Equal(1f, x.max().item<float>());
        Assert.Equal(0.5f, m.min().item<float>());
    }
}
