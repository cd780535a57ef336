using System.Text.Json;
using DiffusionCache.Formats.Safetensors;
using DiffusionCache.Models.Loading;
using DiffusionCache.Pipelines;
using DiffusionCache.Schedulers;
using TorchSharp;

namespace DiffusionCache.Parity;

/// <summary>
/// Runs the <c>schedulers</c> golden cases (shared/golden/schedulers/README.md): <c>timesteps</c> (set_timesteps
/// results, alphas_cumprod, sigmas) and <c>trajectory</c> (whole loops with the closed-form fake-v1 model) need only
/// the schedulers. <c>cfg-sampling</c> cases run the tiny U-Net through our one sampling loop
/// (<see cref="DiffusionSampler"/>), so they check the pipeline's guidance and stepping as well.
/// </summary>
public sealed class SchedulerParity : CaseParitySuite
{
    /// <summary>Case type: <c>set_timesteps</c> results, <c>alphas_cumprod</c> and sigmas per step count (or the
    /// step counts diffusers refuses).</summary>
    public const string TimestepsCase = "timesteps";
    /// <summary>Case type: a whole denoising loop driven by the closed-form <see cref="FakeV1"/> model.</summary>
    public const string TrajectoryCase = "trajectory";
    /// <summary>Case type: classifier-free guided sampling of the tiny U-Net through
    /// <see cref="DiffusionSampler"/>.</summary>
    public const string CfgSamplingCase = "cfg-sampling";

    /// <inheritdoc />
    public override string Kind => "schedulers";

    /// <summary>Runs one case. A structural problem (missing field, unexpected tensor, refused config) is a failed
    /// result with the reason as its detail. A <c>cfg-sampling</c> case without a U-Net loader is an error, not a
    /// result.</summary>
    public override ParityResult RunCase(GoldenFolder folder, JsonElement @case) =>
        RunTensorCase(folder, @case, IsInput, (file, check, covered) =>
        {
            switch (CaseType(@case))
            {
                case TimestepsCase: RunTimesteps(@case, file, check, covered); break;
                case TrajectoryCase: RunTrajectory(@case, file, check, covered); break;
                case CfgSamplingCase: RunCfg(folder, @case, file, check, covered); break;
                default: throw new CaseProblem($"unknown case type '{CaseType(@case)}'");
            }
        });

    /// <summary>fake-v1's coefficient: <c>(float)(0.5 * cos(pi / 2 * t / T))</c>, computed in double.</summary>
    public static float FakeV1Coefficient(double t, int numTrainTimesteps) =>
        (float)(0.5 * Math.Cos(Math.PI / 2 * t / numTrainTimesteps));

    /// <summary>The closed-form fake model of the trajectory cases: <c>c * x + 0.1f * sin(x)</c> in float32.</summary>
    public static torch.Tensor FakeV1(torch.Tensor xIn, double t, int numTrainTimesteps) =>
        xIn * FakeV1Coefficient(t, numTrainTimesteps) + torch.sin(xIn) * 0.1f;

    private static bool IsInput(string name) =>
        name is "x_T" or "cond" or "uncond" || name.StartsWith("noise.", StringComparison.Ordinal);

    private static void RunTimesteps(JsonElement @case, SafetensorsFile file, CaseCheck check, HashSet<string> covered)
    {
        var config = Config(@case);
        using (var fresh = SchedulerFactory.FromJson(config))
            CompareTensor(file, check, covered, "alphas_cumprod", fresh.AlphasCumprod);
        foreach (var run in @case.GetProperty("runs").EnumerateArray())
        {
            int n = run.GetProperty("num_inference_steps").GetInt32();
            using var s = SchedulerFactory.FromJson(config);
            if (run.TryGetProperty("raises", out var raises))
            {
                try
                {
                    s.SetTimesteps(n);
                }
                catch (DiffusionCacheException)
                {
                    continue;
                }
                throw new CaseProblem($"SetTimesteps({n}) was accepted; diffusers raises ({raises.GetString()})");
            }
            s.SetTimesteps(n);
            CompareTimesteps($"timesteps[n={n}]", s, run.GetProperty("timesteps"));
            check.Scalar($"init_noise_sigma[n={n}]", s.InitNoiseSigma, run.GetProperty("init_noise_sigma").GetDouble());
            if (s is ISigmaScheduler sigmaScheduler)
                CompareTensor(file, check, covered, $"sigmas.{n}", sigmaScheduler.Sigmas);
            if (file.Contains($"timesteps.{n}"))
                CompareTensor(file, check, covered, $"timesteps.{n}", [.. s.Timesteps.Select(v => (float)v)]);
        }
    }

    private static void RunTrajectory(JsonElement @case, SafetensorsFile file, CaseCheck check, HashSet<string> covered)
    {
        string model = @case.GetProperty("model_output").GetString()!;
        if (model != "fake-v1") throw new CaseProblem($"unknown model_output '{model}'");
        using var s = SchedulerFactory.FromJson(Config(@case));
        ApplyStepKwargs(s, @case.GetProperty("step_kwargs"));
        var noiseSteps = @case.GetProperty("noise_steps").EnumerateArray().Select(e => e.GetInt32()).ToHashSet();
        var x = Prepare(@case, s, file, check);
        int trainSteps = s.Config.NumTrainTimesteps;
        for (int i = 0; i < s.Timesteps.Count; i++)
        {
            using var stepScope = torch.NewDisposeScope();
            var xIn = s.ScaleModelInput(x, i);
            if (file.Contains($"scaled.{i}")) CompareTensor(file, check, covered, $"scaled.{i}", xIn);
            var m = FakeV1(xIn, s.Timesteps[i], trainSteps);
            var noise = noiseSteps.Contains(i) ? StepNoise.FromTensor(file.Load($"noise.{i}")) : null;
            x = s.Step(m, i, x, noise);
            CompareTensor(file, check, covered, $"x.{i}", x);
            x = x.MoveToOuterDisposeScope();
        }
        CompareTensor(file, check, covered, "final", x);
    }

    private static void RunCfg(GoldenFolder folder, JsonElement @case, SafetensorsFile file, CaseCheck check,
        HashSet<string> covered)
    {
        using var unet = UNetLoader.Load(folder.Resolve(@case.GetProperty("model").GetString()!));
        using var s = SchedulerFactory.FromJson(Config(@case));
        using var scope = torch.NewDisposeScope();
        using var xT = Prepare(@case, s, file, check);   // validates the schedule; the sampler applies init_noise_sigma
        var cond = file.Load("cond");
        var request = new SamplingRequest
        {
            Steps = @case.GetProperty("num_inference_steps").GetInt32(),
            Batch = (int)cond.shape[0],
            Height = (int)xT.shape[2],
            Width = (int)xT.shape[3],
            Context = cond,
            UnconditionalContext = file.Load("uncond"),
            GuidanceScale = @case.GetProperty("guidance_scale").GetDouble(),
            InitialNoise = file.Load("x_T"),
        };
        using var recorder = new StepRecorder();
        var final = DiffusionSampler.Sample(unet, s, request, [recorder]);
        for (int i = 0; i < recorder.Latents.Count; i++)
        {
            CompareTensor(file, check, covered, $"noise_pred.{i}", recorder.Predictions[i]);
            CompareTensor(file, check, covered, $"x.{i}", recorder.Latents[i]);
        }
        CompareTensor(file, check, covered, "final", final.MoveToOuterDisposeScope());
    }

    /// <summary>Checks the schedule against the manifest and returns <c>x_T * init_noise_sigma</c>.</summary>
    private static torch.Tensor Prepare(JsonElement @case, IScheduler s, SafetensorsFile file, CaseCheck check)
    {
        int n = @case.GetProperty("num_inference_steps").GetInt32();
        s.SetTimesteps(n);
        CompareTimesteps("timesteps", s, @case.GetProperty("timesteps"));
        int numSteps = @case.GetProperty("num_steps").GetInt32();
        if (numSteps != s.Timesteps.Count)
            throw new CaseProblem($"num_steps: {s.Timesteps.Count} vs expected {numSteps}");
        check.Scalar("init_noise_sigma", s.InitNoiseSigma, @case.GetProperty("init_noise_sigma").GetDouble());
        var xT = file.Load("x_T");
        long[] shape = [.. @case.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64())];
        if (!xT.shape.SequenceEqual(shape))
            throw new CaseProblem($"x_T shape [{string.Join(",", xT.shape)}] vs manifest shape [{string.Join(",", shape)}]");
        return xT * s.InitNoiseSigma;
    }

    private static void ApplyStepKwargs(IScheduler s, JsonElement kwargs)
    {
        foreach (var kwarg in kwargs.EnumerateObject())
        {
            if (kwarg.Name == "eta" && s is DdimScheduler ddim) ddim.Eta = kwarg.Value.GetDouble();
            else throw new CaseProblem($"step argument '{kwarg.Name}' is not supported for {s.Config.ClassName}");
        }
    }

    private static JsonElement Config(JsonElement @case)
    {
        var config = @case.GetProperty("config");
        if (@case.TryGetProperty("scheduler", out var scheduler) &&
            config.TryGetProperty("_class_name", out var className) && scheduler.GetString() != className.GetString())
            throw new CaseProblem($"scheduler '{scheduler.GetString()}' differs from config._class_name '{className.GetString()}'");
        return config;
    }

    /// <summary>Timesteps must match exactly (Euler's as float32 values).</summary>
    private static void CompareTimesteps(string name, IScheduler s, JsonElement expected)
    {
        var want = expected.EnumerateArray().Select(e => e.GetDouble()).ToArray();
        var got = s.Timesteps;
        bool floatTimesteps = s is EulerDiscreteScheduler;
        if (got.Count != want.Length)
            throw new CaseProblem($"{name}: {got.Count} timesteps vs expected {want.Length}");
        for (int i = 0; i < want.Length; i++)
        {
            bool equal = got[i] == want[i] || (floatTimesteps && (float)got[i] == (float)want[i]);
            if (!equal)
                throw new CaseProblem($"{name}[{i}]: {got[i]:R} vs expected {want[i]:R}");
        }
    }

    private static void CompareTensor(SafetensorsFile file, CaseCheck check, HashSet<string> covered, string name,
        IReadOnlyList<float> actual) =>
        CompareTensor(file, check, covered, name, torch.tensor(actual.ToArray(), torch.float32));

    private static void CompareTensor(SafetensorsFile file, CaseCheck check, HashSet<string> covered, string name,
        torch.Tensor actual)
    {
        if (!file.Contains(name)) throw new CaseProblem($"expected tensor '{name}' is missing from the case file");
        using var expected = file.Load(name);
        check.Tensor(name, actual, expected);
        covered.Add(name);
    }

}
