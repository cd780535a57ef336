using System.Text.Json;
using DiffusionCache.Formats.Json;

namespace DiffusionCache.Schedulers;

/// <summary>How the training betas are laid out over the timesteps (diffusers' <c>beta_schedule</c>); ignored when
/// <see cref="SchedulerConfig.TrainedBetas"/> is given.</summary>
public enum BetaSchedule
{
    /// <summary><c>linear</c>: betas evenly spaced from <c>beta_start</c> to <c>beta_end</c> (DDPM).</summary>
    Linear,
    /// <summary><c>scaled_linear</c>: the betas' square roots evenly spaced, then squared (Stable Diffusion).</summary>
    ScaledLinear,
    /// <summary><c>squaredcos_cap_v2</c>: the cosine schedule of alpha-bar (Improved DDPM/Glide), betas capped at
    /// 0.999; <c>beta_start</c>/<c>beta_end</c> are not used.</summary>
    SquaredCosCapV2,
}

/// <summary>What the model predicts. diffusers' EulerDiscreteScheduler also accepts <c>original_sample</c>, an alias
/// of <c>sample</c>.</summary>
public enum PredictionType
{
    /// <summary><c>epsilon</c>: the model predicts the noise that was added (SD 1.x, SD 2.x base, SDXL).</summary>
    Epsilon,
    /// <summary><c>v_prediction</c>: the model predicts v = sqrt(alpha-bar) * noise - sqrt(1 - alpha-bar) * x0
    /// (Salimans &amp; Ho 2022; SD 2.x 768-v).</summary>
    VPrediction,
    /// <summary><c>sample</c>: the model predicts the denoised sample x0 directly.</summary>
    Sample,
}

/// <summary>How the inference timesteps are spread over the <c>T</c> training timesteps (<c>timestep_spacing</c>):
/// Table 2 of "Common Diffusion Noise Schedules and Sample Steps are Flawed" (arXiv 2305.08891).
/// DPM-Solver spaces <c>n + 1</c> points and drops the last (see <see cref="DpmSolverMultistepScheduler"/>).</summary>
public enum TimestepSpacing
{
    /// <summary><c>leading</c>: multiples of <c>T // n</c> counting up from 0, plus <c>steps_offset</c> (SD 1.x/2.x),
    /// so the first step usually falls short of the last training timestep.</summary>
    Leading,
    /// <summary><c>trailing</c>: counts down from <c>T - 1</c> by <c>T / n</c>, so the first step is at the last
    /// training timestep.</summary>
    Trailing,
    /// <summary><c>linspace</c>: <c>n</c> values evenly spaced from 0 to <c>T - 1</c>, both included (rounded, except
    /// for Euler).</summary>
    Linspace,
}

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
    /// <summary>The diffusers class the config is read for and builds (<c>_class_name</c>, e.g.
    /// <c>"DDIMScheduler"</c>); one of <see cref="SupportedClasses"/>.</summary>
    public required string ClassName { get; init; }
    /// <summary><c>num_train_timesteps</c>: T, the number of training timesteps (the length of the beta schedule);
    /// default 1000.</summary>
    public int NumTrainTimesteps { get; init; } = 1000;
    /// <summary><c>beta_start</c>: the first beta of the linear and scaled-linear schedules; default 0.0001 (Stable
    /// Diffusion: 0.00085).</summary>
    public double BetaStart { get; init; } = 0.0001;
    /// <summary><c>beta_end</c>: the last beta of the linear and scaled-linear schedules; default 0.02 (Stable
    /// Diffusion: 0.012).</summary>
    public double BetaEnd { get; init; } = 0.02;
    /// <summary><c>beta_schedule</c>: how the betas go from <see cref="BetaStart"/> to <see cref="BetaEnd"/>;
    /// default linear.</summary>
    public BetaSchedule BetaSchedule { get; init; } = BetaSchedule.Linear;
    /// <summary>Betas given directly (float64 as in the JSON; diffusers casts them to float32).</summary>
    public IReadOnlyList<double>? TrainedBetas { get; init; }
    /// <summary><c>prediction_type</c>: what the model outputs, as it was trained; default epsilon.</summary>
    public PredictionType PredictionType { get; init; } = PredictionType.Epsilon;
    /// <summary><c>timestep_spacing</c>; default leading (linspace for DPM-Solver and Euler).</summary>
    public TimestepSpacing TimestepSpacing { get; init; } = TimestepSpacing.Leading;
    /// <summary><c>steps_offset</c>: added to every <c>leading</c> timestep (Stable Diffusion: 1); default 0, must be
    /// &gt;= 0.</summary>
    public int StepsOffset { get; init; }
    /// <summary><c>rescale_betas_zero_snr</c>: zero-terminal-SNR rescaling (arXiv 2305.08891). Not implemented: every
    /// scheduler refuses true.</summary>
    public bool RescaleBetasZeroSnr { get; init; }

    // DDPM / DDIM
    /// <summary>DDPM/DDIM <c>clip_sample</c>: clamp the predicted x0 to ±<see cref="ClipSampleRange"/> before the
    /// update; default true (<see cref="Solvers.For"/> turns it off, as Stable Diffusion configs do).</summary>
    public bool ClipSample { get; init; } = true;
    /// <summary>DDPM/DDIM <c>clip_sample_range</c>: the bound of <see cref="ClipSample"/>; default 1.</summary>
    public double ClipSampleRange { get; init; } = 1.0;
    /// <summary><c>thresholding</c>: Imagen's dynamic thresholding. Not implemented: true is refused.</summary>
    public bool Thresholding { get; init; }
    /// <summary><c>dynamic_thresholding_ratio</c>: the quantile of dynamic thresholding; read for compatibility,
    /// unused since <see cref="Thresholding"/> is refused.</summary>
    public double DynamicThresholdingRatio { get; init; } = 0.995;
    /// <summary><c>sample_max_value</c>: the ceiling of dynamic thresholding; read for compatibility, unused.</summary>
    public double SampleMaxValue { get; init; } = 1.0;
    /// <summary>DDPM: <c>fixed_small</c> (default), <c>fixed_large</c>, ...; DPM-Solver: null (default) or
    /// <c>learned</c>/<c>learned_range</c>.</summary>
    public string? VarianceType { get; init; }

    // DDIM / PNDM
    /// <summary>DDIM/PNDM <c>set_alpha_to_one</c>: below timestep 0 alpha-bar is 1 (true) or
    /// <c>alphas_cumprod[0]</c> (false). Default true for DDIM (<see cref="Defaults"/>), false otherwise.</summary>
    public bool SetAlphaToOne { get; init; }

    // PNDM
    /// <summary>PNDM <c>skip_prk_steps</c>: PLMS alone, without the Runge-Kutta warm-up (Stable Diffusion's
    /// setting); default false.</summary>
    public bool SkipPrkSteps { get; init; }

    // DPM-Solver multistep
    /// <summary>DPM-Solver <c>solver_order</c>: 1, 2 (default; recommended for guided sampling) or 3.</summary>
    public int SolverOrder { get; init; } = 2;
    /// <summary>DPM-Solver <c>algorithm_type</c>: only <c>"dpmsolver++"</c> (default) is implemented; <c>"deis"</c>
    /// is mapped to it as diffusers does, others are refused.</summary>
    public string AlgorithmType { get; init; } = "dpmsolver++";
    /// <summary>DPM-Solver <c>solver_type</c>: the second-order update, <c>"midpoint"</c> (default) or
    /// <c>"heun"</c>; <c>"logrho"</c>, <c>"bh1"</c>, <c>"bh2"</c> are mapped to midpoint.</summary>
    public string SolverType { get; init; } = "midpoint";
    /// <summary>DPM-Solver <c>lower_order_final</c>: with fewer than 15 steps, the last two steps use lower orders
    /// (steadier few-step sampling); default true.</summary>
    public bool LowerOrderFinal { get; init; } = true;
    /// <summary>DPM-Solver <c>euler_at_final</c>: the last step is first order whatever the step count; default
    /// false.</summary>
    public bool EulerAtFinal { get; init; }
    /// <summary>DPM-Solver/Euler <c>use_karras_sigmas</c>: the rho-7 sigma ramp of Karras et al. 2022 instead of the
    /// training sigmas at the spaced timesteps; null in JSON reads as false.</summary>
    public bool UseKarrasSigmas { get; init; }
    /// <summary>DPM-Solver <c>use_lu_lambdas</c>. Not implemented: true is refused.</summary>
    public bool UseLuLambdas { get; init; }
    /// <summary>DPM-Solver <c>final_sigmas_type</c>: the sigma after the last step, <c>"zero"</c> (default; the last
    /// step returns the x0 prediction) or <c>"sigma_min"</c> (the smallest training sigma); null is refused.</summary>
    public string? FinalSigmasType { get; init; } = "zero";
    /// <summary>DPM-Solver <c>lambda_min_clipped</c>: the highest timesteps, whose log-SNR (lambda) is below this
    /// value, are left out of the schedule; default -Infinity (none). NaN is refused.</summary>
    public double LambdaMinClipped { get; init; } = double.NegativeInfinity;

    // Euler discrete
    /// <summary>Euler <c>interpolation_type</c> of the sigmas between training timesteps: only <c>"linear"</c>
    /// (default) is implemented.</summary>
    public string InterpolationType { get; init; } = "linear";
    /// <summary>Euler <c>timestep_type</c>: <c>"discrete"</c> (default) or <c>"continuous"</c>, which diffusers treats
    /// differently only with v_prediction (refused here), so it samples as discrete.</summary>
    public string TimestepType { get; init; } = "discrete";
    /// <summary>Euler <c>sigma_min</c>: the low end of the Karras ramp (<see cref="UseKarrasSigmas"/>); null: the
    /// smallest sigma of the schedule.</summary>
    public double? SigmaMin { get; init; }
    /// <summary>Euler <c>sigma_max</c>: the high end of the Karras ramp; null: the largest sigma of the
    /// schedule.</summary>
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

    /// <summary>The diffusers classes this port reads and builds: DDPMScheduler, DDIMScheduler, PNDMScheduler,
    /// DPMSolverMultistepScheduler, EulerDiscreteScheduler.</summary>
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

    /// <summary>Parses <paramref name="json"/> (Python-written JSON: <c>Infinity</c>, <c>-Infinity</c> and
    /// <c>NaN</c> are accepted) and reads it as <see cref="FromJson(JsonElement, string?)"/> does.</summary>
    /// <param name="json">The text of a <c>scheduler_config.json</c>.</param>
    /// <param name="className">The class to read it for; null: the object's <c>_class_name</c>.</param>
    /// <exception cref="DiffusionCacheException">Invalid JSON, a missing or unsupported class, or a value of the
    /// wrong type or outside its enumeration.</exception>
    public static SchedulerConfig FromJson(string json, string? className = null)
    {
        using var document = ParseText(json, "scheduler config");
        return FromJson(document.RootElement, className);
    }

    /// <summary>Reads a <c>scheduler_config.json</c> file as <see cref="FromJson(string, string?)"/> does; errors
    /// name the path.</summary>
    /// <param name="path">The file.</param>
    /// <param name="className">The class to read it for; null: the file's <c>_class_name</c>.</param>
    /// <exception cref="DiffusionCacheException">The file is missing, or its content is refused.</exception>
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
