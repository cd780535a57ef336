using System.Text.Json.Nodes;
using DiffusionCache.Schedulers;

namespace DiffusionCache.Tests.Schedulers;

public sealed class SchedulerConfigTests
{
    private const string Ddpm = """
        {"_class_name": "DDPMScheduler", "_diffusers_version": "0.27.2", "beta_end": 0.02, "beta_schedule": "linear",
         "beta_start": 0.0001, "clip_sample": true, "clip_sample_range": 1.0, "dynamic_thresholding_ratio": 0.995,
         "num_train_timesteps": 1000, "prediction_type": "epsilon", "rescale_betas_zero_snr": false,
         "sample_max_value": 1.0, "steps_offset": 1, "thresholding": false, "timestep_spacing": "leading",
         "trained_betas": null, "variance_type": "fixed_small"}
        """;

    private const string DpmSolver = """
        {"_class_name": "DPMSolverMultistepScheduler", "_diffusers_version": "0.27.2", "algorithm_type": "dpmsolver++",
         "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "dynamic_thresholding_ratio": 0.995,
         "euler_at_final": false, "final_sigmas_type": "zero", "lambda_min_clipped": -Infinity, "lower_order_final": true,
         "num_train_timesteps": 1000, "prediction_type": "epsilon", "rescale_betas_zero_snr": false,
         "sample_max_value": 1.0, "solver_order": 2, "solver_type": "midpoint", "steps_offset": 1, "thresholding": false,
         "timestep_spacing": "leading", "trained_betas": null, "use_karras_sigmas": false, "use_lu_lambdas": false,
         "variance_type": null}
        """;

    private const string Euler = """
        {"_class_name": "EulerDiscreteScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
         "beta_start": 0.00085, "interpolation_type": "linear", "num_train_timesteps": 1000,
         "prediction_type": "epsilon", "sigma_max": null, "sigma_min": null, "steps_offset": 1,
         "timestep_spacing": "leading", "timestep_type": "discrete", "trained_betas": null, "use_karras_sigmas": false}
        """;

    private const string Pndm = """
        {"_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
         "num_train_timesteps": 1000, "prediction_type": "epsilon", "set_alpha_to_one": false, "skip_prk_steps": true,
         "steps_offset": 1, "timestep_spacing": "leading", "trained_betas": null}
        """;

    private static string With(string json, string key, JsonNode? value)
    {
        var node = JsonNode.Parse(json.Replace("-Infinity", "\"-Infinity\""))!.AsObject();
        node[key] = value;
        return node.ToJsonString();
    }

    private static IScheduler Build(string json)
    {
        using var doc = DiffusionCache.Formats.Json.PythonJson.Parse(json);
        return SchedulerFactory.FromJson(doc.RootElement);
    }

    public static TheoryData<string, string, JsonNode?, string> UnsupportedValues => new()
    {
        { Ddpm, "thresholding", true, "thresholding = true" },
        { Ddpm, "variance_type", "learned_range", "variance_type = \"learned_range\"" },
        { Ddpm, "variance_type", "fixed_small_log", "variance_type = \"fixed_small_log\"" },
        { Ddpm, "rescale_betas_zero_snr", true, "rescale_betas_zero_snr = true" },
        { Ddpm, "beta_schedule", "sigmoid", "beta_schedule = \"sigmoid\"" },
        { Ddpm, "prediction_type", "original_sample", "prediction_type = \"original_sample\"" },
        { Ddpm, "timestep_spacing", "karras", "timestep_spacing = \"karras\"" },
        { Ddpm, "steps_offset", -1, "steps_offset = -1" },
        { DpmSolver, "algorithm_type", "sde-dpmsolver++", "algorithm_type = \"sde-dpmsolver++\"" },
        { DpmSolver, "algorithm_type", "dpmsolver", "algorithm_type = \"dpmsolver\"" },
        { DpmSolver, "use_lu_lambdas", true, "use_lu_lambdas = true" },
        { DpmSolver, "variance_type", "learned_range", "variance_type = \"learned_range\"" },
        { DpmSolver, "solver_order", 4, "solver_order = 4" },
        { DpmSolver, "solver_type", "bogus", "solver_type = \"bogus\"" },
        { DpmSolver, "final_sigmas_type", null, "final_sigmas_type = null" },
        { DpmSolver, "thresholding", true, "thresholding = true" },
        { Euler, "interpolation_type", "log_linear", "interpolation_type = \"log_linear\"" },
        { Pndm, "prediction_type", "sample", "prediction_type = \"sample\"" },
    };

    [Theory]
    [MemberData(nameof(UnsupportedValues))]
    public void UnsupportedValueIsRefusedNamingKeyAndValue(string json, string key, JsonNode? value, string expected)
    {
        var e = Assert.Throws<DiffusionCacheException>(() => Build(With(json, key, value)));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void UnknownClassListsTheSupportedOnes()
    {
        var e = Assert.Throws<DiffusionCacheException>(() => Build(With(Ddpm, "_class_name", "LMSDiscreteScheduler")));
        Assert.Contains("LMSDiscreteScheduler", e.Message);
        foreach (var supported in SchedulerFactory.SupportedClasses) Assert.Contains(supported, e.Message);
    }

    [Fact]
    public void MissingClassNameIsRefused()
    {
        var node = JsonNode.Parse(With(Ddpm, "clip_sample", true))!.AsObject();
        node.Remove("_class_name");
        var e = Assert.Throws<DiffusionCacheException>(() => Build(node.ToJsonString()));
        Assert.Contains("_class_name", e.Message);
    }

    [Theory]
    [InlineData("num_train_timesteps", "\"1000\"")]
    [InlineData("beta_start", "true")]
    [InlineData("clip_sample", "1")]
    [InlineData("trained_betas", "\"no\"")]
    public void WrongTypeIsRefusedNamingTheKey(string key, string raw)
    {
        var e = Assert.Throws<DiffusionCacheException>(() => Build(With(Ddpm, key, JsonNode.Parse(raw))));
        Assert.Contains(key, e.Message);
    }

    [Fact]
    public void KeysTheClassDoesNotAcceptAreIgnoredAsDiffusersDoes()
    {
        // A PNDM config handed to DDIM (diffusers' DDIMScheduler.from_config(pndm.config)).
        var config = SchedulerConfig.FromJson(With(Pndm, "thresholding", true), "DDIMScheduler");
        Assert.Equal("DDIMScheduler", config.ClassName);
        Assert.Contains("skip_prk_steps", config.IgnoredKeys);
        Assert.DoesNotContain("thresholding", config.IgnoredKeys);   // DDIM reads it...
        Assert.Throws<DiffusionCacheException>(() => SchedulerFactory.Create(config));   // ...and refuses true

        // PNDM itself has no thresholding: the key is ignored, not refused.
        var pndm = SchedulerConfig.FromJson(With(Pndm, "thresholding", true));
        Assert.Contains("thresholding", pndm.IgnoredKeys);
        using var s = SchedulerFactory.Create(pndm);
        Assert.IsType<PndmScheduler>(s);
    }

    [Fact]
    public void MissingKeysTakeTheClassDefaults()
    {
        Assert.Equal(TimestepSpacing.Linspace, SchedulerConfig.FromJson("""{"_class_name": "DPMSolverMultistepScheduler"}""").TimestepSpacing);
        Assert.Equal(TimestepSpacing.Linspace, SchedulerConfig.FromJson("""{"_class_name": "EulerDiscreteScheduler"}""").TimestepSpacing);
        var ddim = SchedulerConfig.FromJson("""{"_class_name": "DDIMScheduler"}""");
        Assert.Equal(TimestepSpacing.Leading, ddim.TimestepSpacing);
        Assert.True(ddim.SetAlphaToOne);
        Assert.True(ddim.ClipSample);
        Assert.False(SchedulerConfig.FromJson("""{"_class_name": "PNDMScheduler"}""").SetAlphaToOne);
        Assert.Equal("fixed_small", SchedulerConfig.FromJson("""{"_class_name": "DDPMScheduler"}""").VarianceType);
        Assert.Null(SchedulerConfig.FromJson("""{"_class_name": "DPMSolverMultistepScheduler"}""").VarianceType);
    }

    [Fact]
    public void PythonInfinityIsRead()
    {
        var config = SchedulerConfig.FromJson(DpmSolver);
        Assert.Equal(double.NegativeInfinity, config.LambdaMinClipped);
        Assert.Empty(config.IgnoredKeys);
    }

    [Fact]
    public void ConfigFileIsReadAndErrorsNameTheFile()
    {
        string dir = Directory.CreateTempSubdirectory("dc-sched-").FullName;
        try
        {
            string good = Path.Combine(dir, "scheduler_config.json");
            File.WriteAllText(good, DpmSolver);
            using var s = SchedulerFactory.FromConfigFile(good);
            Assert.IsType<DpmSolverMultistepScheduler>(s);

            string bad = Path.Combine(dir, "bad.json");
            File.WriteAllText(bad, With(DpmSolver, "algorithm_type", "sde-dpmsolver"));
            var e = Assert.Throws<DiffusionCacheException>(() => SchedulerFactory.FromConfigFile(bad));
            Assert.Contains(bad, e.Message);
            Assert.Contains("algorithm_type", e.Message);

            Assert.Throws<DiffusionCacheException>(() => SchedulerFactory.FromConfigFile(Path.Combine(dir, "absent.json")));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void TrainedBetasAreUsedAsFloat32()
    {
        var json = """{"_class_name": "DDIMScheduler", "num_train_timesteps": 2, "trained_betas": [0.1, 0.2]}""";
        using var s = Build(json);
        Assert.Equal([0.9f, (float)((double)0.9f * 0.8f)], s.AlphasCumprod);

        var e = Assert.Throws<DiffusionCacheException>(() =>
            Build("""{"_class_name": "DDIMScheduler", "num_train_timesteps": 3, "trained_betas": [0.1, 0.2]}"""));
        Assert.Contains("trained_betas", e.Message);
    }

    public static TheoryData<string> AllClasses => new(Ddpm, With(Ddpm, "_class_name", "DDIMScheduler"), Pndm, DpmSolver, Euler);

    [Theory]
    [MemberData(nameof(AllClasses))]
    public void ZeroOrTooManyStepsAreRefused(string json)
    {
        using var s = Build(json);
        Assert.Contains("at least 1", Assert.Throws<DiffusionCacheException>(() => s.SetTimesteps(0)).Message);
        Assert.Throws<DiffusionCacheException>(() => s.SetTimesteps(-5));
        var e = Assert.Throws<DiffusionCacheException>(() => s.SetTimesteps(1001));
        Assert.Contains("num_train_timesteps", e.Message);
        s.SetTimesteps(1000);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void PrkWithFewerThanFourStepsIsRefused(int steps)
    {
        using var s = Build(With(Pndm, "skip_prk_steps", false));
        Assert.Throws<DiffusionCacheException>(() => s.SetTimesteps(steps));
        s.SetTimesteps(4);
        Assert.Equal(12 + 1, s.Timesteps.Count);
    }
}
