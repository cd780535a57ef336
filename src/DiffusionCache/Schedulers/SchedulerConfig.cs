using System.Text.Json;
using DiffusionCache.Formats.Json;

namespace DiffusionCache.Schedulers;

public enum BetaSchedule { Linear, ScaledLinear, SquaredCosCapV2 }

/// <summary>What the model predicts. diffusers' EulerDiscreteScheduler also accepts <c>original_sample</c>, an alias
/// of <c>sample</c>.</summary>
public enum PredictionType { Epsilon, VPrediction, Sample }

/// <summary>Table 2 of "Common Diffusion Noise Schedules and Sample Steps are Flawed" (arXiv 2305.08891).</summary>
public enum TimestepSpacing { Leading, Trailing, Linspace }

/// <summary>
/// A diffusers scheduler config (<c>scheduler_config.json</c>), read as diffusers 0.27.2's <c>from_config</c> reads
/// it for the class named by <see cref="ClassName"/>: only the keys that class's <c>__init__</c> accepts are read
/// (others, such as <c>skip_prk_steps</c> in a config handed to DDIM, are ignored by diffusers too and listed in
/// <see cref="IgnoredKeys"/>), and a missing key takes that class's default. Values are checked for type here;
/// whether a value is implemented is checked by the scheduler class (<see cref="SchedulerFactory"/>), which refuses
/// any value that changes the arithmetic and that this port does not implement.
/// </summary>
public sealed record SchedulerConfig
{
    public required string ClassName { get; init; }
    public int NumTrainTimesteps { get; init; } = 1000;
    public double BetaStart { get; init; } = 0.0001;
    public double BetaEnd { get; init; } = 0.02;
    public BetaSchedule BetaSchedule { get; init; } = BetaSchedule.Linear;
    /// <summary>Betas given directly (float64 as in the JSON; diffusers casts them to float32).</summary>
    public IReadOnlyList<double>? TrainedBetas { get; init; }
    public PredictionType PredictionType { get; init; } = PredictionType.Epsilon;
    public TimestepSpacing TimestepSpacing { get; init; } = TimestepSpacing.Leading;
    public int StepsOffset { get; init; }
    public bool RescaleBetasZeroSnr { get; init; }

    // DDPM / DDIM
    public bool ClipSample { get; init; } = true;
    public double ClipSampleRange { get; init; } = 1.0;
    public bool Thresholding { get; init; }
    public double DynamicThresholdingRatio { get; init; } = 0.995;
    public double SampleMaxValue { get; init; } = 1.0;
    /// <summary>DDPM: <c>fixed_small</c> (default), <c>fixed_large</c>, ...; DPM-Solver: null (default) or
    /// <c>learned</c>/<c>learned_range</c>.</summary>
    public string? VarianceType { get; init; }

    // DDIM / PNDM
    public bool SetAlphaToOne { get; init; }

    // PNDM
    public bool SkipPrkSteps { get; init; }

    // DPM-Solver multistep
    public int SolverOrder { get; init; } = 2;
    public string AlgorithmType { get; init; } = "dpmsolver++";
    public string SolverType { get; init; } = "midpoint";
    public bool LowerOrderFinal { get; init; } = true;
    public bool EulerAtFinal { get; init; }
    public bool UseKarrasSigmas { get; init; }
    public bool UseLuLambdas { get; init; }
    public string? FinalSigmasType { get; init; } = "zero";
    public double LambdaMinClipped { get; init; } = double.NegativeInfinity;

    // Euler discrete
    public string InterpolationType { get; init; } = "linear";
    public string TimestepType { get; init; } = "discrete";
    public double? SigmaMin { get; init; }
    public double? SigmaMax { get; init; }

    /// <summary>Keys present in the JSON that the class does not accept (diffusers ignores them as well).</summary>
    public IReadOnlyList<string> IgnoredKeys { get; init; } = [];

    internal const string Ddpm = "DDPMScheduler";
    internal const string Ddim = "DDIMScheduler";
    internal const string Pndm = "PNDMScheduler";
    internal const string DpmSolverMultistep = "DPMSolverMultistepScheduler";
    internal const string EulerDiscrete = "EulerDiscreteScheduler";

    /// <summary>The classes this port implements, with the config keys each one's <c>__init__</c> accepts in
    /// diffusers 0.27.2.</summary>
    internal static readonly IReadOnlyDictionary<string, string[]> AcceptedKeys = new Dictionary<string, string[]>
    {
        [Ddpm] = [.. Common, "variance_type", "clip_sample", "thresholding", "dynamic_thresholding_ratio",
            "clip_sample_range", "sample_max_value", "rescale_betas_zero_snr"],
        [Ddim] = [.. Common, "clip_sample", "set_alpha_to_one", "thresholding", "dynamic_thresholding_ratio",
            "clip_sample_range", "sample_max_value", "rescale_betas_zero_snr"],
        [Pndm] = [.. Common, "skip_prk_steps", "set_alpha_to_one"],
        [DpmSolverMultistep] = [.. Common, "solver_order", "thresholding", "dynamic_thresholding_ratio",
            "sample_max_value", "algorithm_type", "solver_type", "lower_order_final", "euler_at_final",
            "use_karras_sigmas", "use_lu_lambdas", "final_sigmas_type", "lambda_min_clipped", "variance_type",
            "rescale_betas_zero_snr"],
        [EulerDiscrete] = [.. Common, "interpolation_type", "use_karras_sigmas", "sigma_min", "sigma_max",
            "timestep_type", "rescale_betas_zero_snr"],
    };

    private static string[] Common =>
    [
        "num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas", "prediction_type",
        "timestep_spacing", "steps_offset",
    ];

    public static IReadOnlyList<string> SupportedClasses { get; } = [Ddpm, Ddim, Pndm, DpmSolverMultistep, EulerDiscrete];

    /// <summary>The config with every key at the default of <paramref name="className"/>'s <c>__init__</c>.</summary>
    public static SchedulerConfig Defaults(string className)
    {
        RequireSupported(className);
        return className switch
        {
            Ddpm => new SchedulerConfig { ClassName = className, VarianceType = "fixed_small" },
            Ddim => new SchedulerConfig { ClassName = className, SetAlphaToOne = true },
            Pndm => new SchedulerConfig { ClassName = className },
            DpmSolverMultistep => new SchedulerConfig { ClassName = className, TimestepSpacing = TimestepSpacing.Linspace },
            _ => new SchedulerConfig { ClassName = className, TimestepSpacing = TimestepSpacing.Linspace },
        };
    }

    /// <summary>Reads a config object. The class is <paramref name="className"/> when given (diffusers'
    /// <c>OtherScheduler.from_config(config)</c>), otherwise the object's <c>_class_name</c>.</summary>
    public static SchedulerConfig FromJson(JsonElement json, string? className = null)
    {
        if (json.ValueKind != JsonValueKind.Object)
            throw new DiffusionCacheException($"scheduler config: expected a JSON object, got {json.ValueKind}");
        if (className is null)
        {
            if (!json.TryGetProperty("_class_name", out var name) || name.ValueKind != JsonValueKind.String)
                throw new DiffusionCacheException("scheduler config: missing string key '_class_name' " +
                    $"(supported: {string.Join(", ", SupportedClasses)})");
            className = name.GetString()!;
        }
        var config = Defaults(className);
        var accepted = AcceptedKeys[className];
        var ignored = new List<string>();
        foreach (var property in json.EnumerateObject())
        {
            string key = property.Name;
            if (key.StartsWith('_')) continue;   // _class_name, _diffusers_version, _use_default_values
            if (!accepted.Contains(key))
            {
                ignored.Add(key);
                continue;
            }
            config = Read(config, key, property.Value);
        }
        return config with { IgnoredKeys = ignored };
    }

    public static SchedulerConfig FromJson(string json, string? className = null)
    {
        using var document = ParseText(json, "scheduler config");
        return FromJson(document.RootElement, className);
    }

    public static SchedulerConfig FromFile(string path, string? className = null)
    {
        if (!File.Exists(path)) throw new DiffusionCacheException($"{path}: scheduler config not found");
        using var document = ParseText(File.ReadAllText(path), path);
        try
        {
            return FromJson(document.RootElement, className);
        }
        catch (DiffusionCacheException e)
        {
            throw new DiffusionCacheException($"{path}: {e.Message}", e);
        }
    }

    internal static void RequireSupported(string className)
    {
        if (!AcceptedKeys.ContainsKey(className))
            throw new DiffusionCacheException($"scheduler class '{className}' is not supported " +
                $"(supported: {string.Join(", ", SupportedClasses)})");
    }

    private static JsonDocument ParseText(string text, string what)
    {
        try
        {
            return PythonJson.Parse(text);
        }
        catch (JsonException e)
        {
            throw new DiffusionCacheException($"{what}: not valid JSON ({e.Message})", e);
        }
    }

    private static SchedulerConfig Read(SchedulerConfig c, string key, JsonElement v) => key switch
    {
        "num_train_timesteps" => c with { NumTrainTimesteps = Int(key, v) },
        "beta_start" => c with { BetaStart = Double(key, v) },
        "beta_end" => c with { BetaEnd = Double(key, v) },
        "beta_schedule" => c with
        {
            BetaSchedule = String(key, v) switch
            {
                "linear" => BetaSchedule.Linear,
                "scaled_linear" => BetaSchedule.ScaledLinear,
                "squaredcos_cap_v2" => BetaSchedule.SquaredCosCapV2,
                var s => throw Unsupported(c.ClassName, key, s, "linear, scaled_linear, squaredcos_cap_v2"),
            },
        },
        "trained_betas" => c with { TrainedBetas = v.ValueKind == JsonValueKind.Null ? null : DoubleArray(key, v) },
        "prediction_type" => c with
        {
            PredictionType = String(key, v) switch
            {
                "epsilon" => PredictionType.Epsilon,
                "v_prediction" => PredictionType.VPrediction,
                "sample" => PredictionType.Sample,
                "original_sample" when c.ClassName == EulerDiscrete => PredictionType.Sample,
                var s => throw Unsupported(c.ClassName, key, s, "epsilon, v_prediction, sample"),
            },
        },
        "timestep_spacing" => c with
        {
            TimestepSpacing = String(key, v) switch
            {
                "leading" => TimestepSpacing.Leading,
                "trailing" => TimestepSpacing.Trailing,
                "linspace" => TimestepSpacing.Linspace,
                var s => throw Unsupported(c.ClassName, key, s, "leading, trailing, linspace"),
            },
        },
        "steps_offset" => c with { StepsOffset = Int(key, v) },
        "rescale_betas_zero_snr" => c with { RescaleBetasZeroSnr = Bool(key, v) },
        "clip_sample" => c with { ClipSample = Bool(key, v) },
        "clip_sample_range" => c with { ClipSampleRange = Double(key, v) },
        "thresholding" => c with { Thresholding = Bool(key, v) },
        "dynamic_thresholding_ratio" => c with { DynamicThresholdingRatio = Double(key, v) },
        "sample_max_value" => c with { SampleMaxValue = Double(key, v) },
        "variance_type" => c with { VarianceType = NullableString(key, v) },
        "set_alpha_to_one" => c with { SetAlphaToOne = Bool(key, v) },
        "skip_prk_steps" => c with { SkipPrkSteps = Bool(key, v) },
        "solver_order" => c with { SolverOrder = Int(key, v) },
        "algorithm_type" => c with { AlgorithmType = String(key, v) },
        "solver_type" => c with { SolverType = String(key, v) },
        "lower_order_final" => c with { LowerOrderFinal = Bool(key, v) },
        "euler_at_final" => c with { EulerAtFinal = Bool(key, v) },
        // Optional[bool] in diffusers: None behaves as False.
        "use_karras_sigmas" => c with { UseKarrasSigmas = v.ValueKind != JsonValueKind.Null && Bool(key, v) },
        "use_lu_lambdas" => c with { UseLuLambdas = v.ValueKind != JsonValueKind.Null && Bool(key, v) },
        "final_sigmas_type" => c with { FinalSigmasType = NullableString(key, v) },
        "lambda_min_clipped" => c with { LambdaMinClipped = Double(key, v) },
        "interpolation_type" => c with { InterpolationType = String(key, v) },
        "timestep_type" => c with { TimestepType = String(key, v) },
        "sigma_min" => c with { SigmaMin = v.ValueKind == JsonValueKind.Null ? null : Double(key, v) },
        "sigma_max" => c with { SigmaMax = v.ValueKind == JsonValueKind.Null ? null : Double(key, v) },
        _ => throw new InvalidOperationException($"accepted key '{key}' has no reader"),
    };

    internal static DiffusionCacheException Unsupported(string className, string key, object? value, string supported) =>
        new($"{className}: {key} = {Show(value)} is not supported (supported: {supported})");

    internal static string Show(object? value) => value switch
    {
        null => "null",
        string s => $"\"{s}\"",
        bool b => b ? "true" : "false",
        double d => d.ToString("R", System.Globalization.CultureInfo.InvariantCulture),
        _ => Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture) ?? "?",
    };

    private static DiffusionCacheException WrongType(string key, JsonElement v, string expected) =>
        new($"scheduler config: {key} must be {expected}, got {v.GetRawText()}");

    private static int Int(string key, JsonElement v) =>
        v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i) ? i : throw WrongType(key, v, "an integer");

    private static double Double(string key, JsonElement v) =>
        PythonJson.TryGetDouble(v, out double d) ? d : throw WrongType(key, v, "a number");

    private static bool Bool(string key, JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => throw WrongType(key, v, "true or false"),
    };

    private static string String(string key, JsonElement v) =>
        v.ValueKind == JsonValueKind.String ? v.GetString()! : throw WrongType(key, v, "a string");

    private static string? NullableString(string key, JsonElement v) =>
        v.ValueKind == JsonValueKind.Null ? null : String(key, v);

    private static double[] DoubleArray(string key, JsonElement v) =>
        v.ValueKind == JsonValueKind.Array
            ? [.. v.EnumerateArray().Select(e => Double(key, e))]
            : throw WrongType(key, v, "null or an array of numbers");
}
