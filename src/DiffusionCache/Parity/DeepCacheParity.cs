using System.Text.Json;
using DiffusionCache.Caching;
using DiffusionCache.Caching.DeepCache;
using DiffusionCache.Formats.Safetensors;
using DiffusionCache.Models.Loading;
using DiffusionCache.Models.UNets;
using DiffusionCache.Pipelines;
using DiffusionCache.Schedulers;
using TorchSharp;

namespace DiffusionCache.Parity;

/// <summary>
/// Runs the <c>deepcache</c> golden cases (shared/golden/deepcache/README.md) against DeepCache 1691a3a:
/// <c>steps</c> (the full-step list <c>interval_seq</c>, uniform and non-uniform, with the power search's
/// diagnostics and its errors) and <c>uniform-sampling</c> / <c>nonuniform-sampling</c> (DDIM runs of the tiny U-Net
/// with <see cref="DeepCachePolicy"/> attached, through <see cref="CachedSampling"/> and the one sampling loop). A
/// sampling case also checks the full and partial steps the policy actually took, and on every partial step the
/// units it reused and recomputed against the manifest's <c>branch_semantics</c> (logged from DeepCache's run).
/// </summary>
public sealed class DeepCacheParity : CaseParitySuite
{
    /// <summary>Case type: the full-step selection (<c>interval_seq</c>) for a step count and interval, or the error
    /// DeepCache raises.</summary>
    public const string StepsCase = "steps";
    /// <summary>Case type: DDIM sampling with DeepCache's uniform 1:N schedule (a full step every N steps).</summary>
    public const string UniformSamplingCase = "uniform-sampling";
    /// <summary>Case type: DDIM sampling with DeepCache's non-uniform 1:N schedule (full steps from its power
    /// search).</summary>
    public const string NonUniformSamplingCase = "nonuniform-sampling";

    /// <summary>Modules the manifest lists as always computed that are not seam call sites of our models.</summary>
    private static readonly HashSet<string> OutputLayers = new(["conv_norm_out", "conv_act", "conv_out"], StringComparer.Ordinal);

    /// <inheritdoc />
    public override string Kind => "deepcache";

    /// <summary>Runs one case; a structural problem or an unexpected refusal is a failed result with the reason.</summary>
    public override ParityResult RunCase(GoldenFolder folder, JsonElement @case) =>
        RunTensorCase(folder, @case, name => name is "x_T" or "cond" or "uncond", (file, check, covered) =>
        {
            switch (CaseType(@case))
            {
                case StepsCase: RunSteps(@case, file, check, covered); break;
                case UniformSamplingCase: RunSampling(folder, @case, file, check, covered, uniform: true); break;
                case NonUniformSamplingCase: RunSampling(folder, @case, file, check, covered, uniform: false); break;
                default: throw new CaseProblem($"unknown case type '{CaseType(@case)}'");
            }
        });

    /// <summary>
    /// The manifest's <c>branch_semantics</c>, one result per branch id (<c>branch_semantics.k</c>): the plan of
    /// <see cref="DeepCachePolicy"/> on the folder's model, and what the policy actually reused and computed on the
    /// partial step of a two-step run, against the modules DeepCache's run logged. Also checks
    /// <c>max_branch_id</c> (the largest branch accepted; the next one refused).
    /// </summary>
    public IReadOnlyList<ParityResult> CheckBranchSemantics(GoldenFolder folder)
    {
        ArgumentNullException.ThrowIfNull(folder);
        RequireKind(folder);
        var manifest = folder.Manifest;
        var (modelName, model) = manifest.GetProperty("models").EnumerateObject().Select(p => (p.Name, p.Value)).Single();
        using var unet = UNetLoader.Load(folder.Resolve(model.GetProperty("path").GetString()!));
        var results = new List<ParityResult>();
        int maxBranch = manifest.GetProperty("max_branch_id").GetInt32();
        string maxId = "branch_semantics.max_branch_id";
        try
        {
            var plan = DeepCachePlan.For(unet, maxBranch);
            if (plan.MaxBranch != maxBranch) throw new CaseProblem($"our max branch for {modelName} is {plan.MaxBranch}, expected {maxBranch}");
            try
            {
                DeepCachePlan.For(unet, maxBranch + 1);
                throw new CaseProblem($"branch {maxBranch + 1} was accepted on {modelName}");
            }
            catch (DiffusionCacheException)
            {
            }
            results.Add(new ParityResult(maxId, 0, true));
        }
        catch (Exception e) when (e is CaseProblem or DiffusionCacheException)
        {
            results.Add(new ParityResult(maxId, double.PositiveInfinity, false, e.Message));
        }

        foreach (var branch in manifest.GetProperty("branch_semantics").EnumerateObject())
        {
            string id = $"branch_semantics.{branch.Name}";
            try
            {
                int k = int.Parse(branch.Name, System.Globalization.CultureInfo.InvariantCulture);
                var want = branch.Value;
                if (want.GetProperty("block").GetInt32() != k / 3 || want.GetProperty("layer").GetInt32() != k % 3)
                    throw new CaseProblem($"manifest (block, layer) differs from ({k / 3}, {k % 3})");
                using var policy = new DeepCachePolicy(unet, DeepCacheSchedule.Uniform(2), k);
                var problems = SemanticsProblems(unet, policy.Plan, want, policy.Plan.ReusedUnits, policy.Plan.RecomputedUnits, checkOutside: false)
                    .Select(p => "plan: " + p).ToList();
                using (var scope = torch.NewDisposeScope())
                {
                    var g = new torch.Generator(0);
                    var request = new SamplingRequest
                    {
                        Steps = 2,
                        Batch = 1,
                        Height = unet.SampleSize,
                        Width = unet.SampleSize,
                        Context = unet.ContextDim is int d ? torch.randn([1, 4, d], generator: g) : null,
                        Seed = 0,
                    };
                    using var ddim = SchedulerFactory.Create(SchedulerConfig.Defaults(SchedulerConfig.Ddim));
                    using var final = CachedSampling.Sample(unet, ddim, request, policy);
                }
                var partial = policy.Log.Where(r => !r.Full).ToList();
                if (partial.Count != 1) throw new CaseProblem($"expected one partial step, the policy took {partial.Count}");
                problems.AddRange(SemanticsProblems(unet, policy.Plan, want, partial[0].Reused, partial[0].Computed, checkOutside: true)
                    .Select(p => "run: " + p));
                results.Add(problems.Count == 0 ? new ParityResult(id, 0, true) : new ParityResult(id, double.PositiveInfinity, false, problems[0]));
            }
            catch (Exception e) when (e is CaseProblem or DiffusionCacheException or KeyNotFoundException or InvalidOperationException or FormatException)
            {
                results.Add(new ParityResult(id, double.PositiveInfinity, false, e.Message));
            }
        }
        return results;
    }

    private static void RunSteps(JsonElement @case, SafetensorsFile file, CaseCheck check, HashSet<string> covered)
    {
        int steps = @case.GetProperty("num_inference_steps").GetInt32();
        int interval = @case.GetProperty("cache_interval").GetInt32();
        bool uniform = @case.GetProperty("uniform").GetBoolean();
        int? center = NullableInt(@case, "center");
        double? pow = NullableDouble(@case, "pow");

        if (@case.TryGetProperty("error", out var error))
        {
            string raised = $"{error.GetProperty("type").GetString()}: {error.GetProperty("message").GetString()}";
            if (file.Contains("num_slow_step"))
                CompareTensor(file, check, covered, "num_slow_step",
                    torch.tensor(new long[] { DeepCacheSchedule.SlowStepCount(steps, interval) }));
            try
            {
                var accepted = DeepCacheSchedule.Create(interval, uniform, center, pow).Select(steps);
                throw new CaseProblem($"selection accepted ([{string.Join(",", accepted.FullSteps)}]); DeepCache raises {raised}");
            }
            catch (DiffusionCacheException)
            {
                return;
            }
        }

        var selection = DeepCacheSchedule.Create(interval, uniform, center, pow).Select(steps);
        var expected = Ints(@case.GetProperty("interval_seq"));
        check.Exact("interval_seq", selection.FullSteps, expected);
        using (var tensor = file.Load("interval_seq"))
            check.Exact("interval_seq (tensor)", selection.FullSteps, tensor.data<long>().Select(v => (int)v).ToArray());
        covered.Add("interval_seq");
        check.Exact<int?>("num_slow_step", [selection.SlowStepCount], [NullableInt(@case, "num_slow_step")]);
        check.Exact<bool>("uses_quad", [selection.UsesQuadCenter], [@case.GetProperty("uses_quad").GetBoolean()]);
        // The power goes down by float64 subtraction in both implementations: exact.
        check.Exact<double?>("final_pow", [selection.FinalPow], [NullableDouble(@case, "final_pow")]);
        if (@case.TryGetProperty("pow_decrements", out var decrements))
            check.Exact<int>("pow_decrements", [selection.PowDecrements], [decrements.GetInt32()]);
        if (selection.UsesQuadCenter)
        {
            CompareTensor(file, check, covered, "quad_values_real", torch.tensor(selection.QuadValuesReal!.ToArray()));
            CompareTensor(file, check, covered, "quad_values_imag", torch.tensor(selection.QuadValuesImag!.ToArray()));
            if (@case.TryGetProperty("min_interior_distance_to_integer", out var distance))
                check.Scalar("min_interior_distance_to_integer", selection.MinInteriorDistanceToInteger, distance.GetDouble());
        }
    }

    private static void RunSampling(GoldenFolder folder, JsonElement @case, SafetensorsFile file, CaseCheck check,
        HashSet<string> covered, bool uniform)
    {
        string selectionField = @case.GetProperty("selection").GetString()!;
        if (selectionField != (uniform ? "uniform" : "nonuniform"))
            throw new CaseProblem($"selection '{selectionField}' in a {CaseType(@case)} case");
        int steps = @case.GetProperty("num_inference_steps").GetInt32();
        int interval = @case.GetProperty("cache_interval").GetInt32();
        int branch = @case.GetProperty("cache_branch_id").GetInt32();
        if (@case.GetProperty("cache_block_id").GetInt32() != branch / 3 || @case.GetProperty("cache_layer_id").GetInt32() != branch % 3)
            throw new CaseProblem($"cache_block_id/cache_layer_id differ from branch {branch} / 3, % 3");
        if (@case.GetProperty("eta").GetDouble() != 0.0) throw new CaseProblem("only eta 0 is defined for these cases");
        bool cfg = @case.GetProperty("cfg").GetBoolean();

        var schedule = uniform
            ? DeepCacheSchedule.Uniform(interval)
            : DeepCacheSchedule.NonUniform(interval, @case.GetProperty("center").GetInt32(), @case.GetProperty("pow").GetDouble());
        var selection = schedule.Select(steps);
        var fullSteps = Ints(@case.GetProperty("full_steps"));
        var partialSteps = Ints(@case.GetProperty("partial_steps"));
        check.Exact("full_steps (schedule)", selection.FullSteps, fullSteps);
        if (!uniform) check.Exact<double?>("final_pow", [selection.FinalPow], [@case.GetProperty("final_pow").GetDouble()]);

        string modelDir = folder.Resolve(folder.Manifest.GetProperty("models").GetProperty(@case.GetProperty("model").GetString()!)
            .GetProperty("path").GetString()!);
        using var unet = UNetLoader.Load(modelDir);
        using var scheduler = SchedulerFactory.FromConfigFile(Path.Combine(modelDir, "scheduler_config.json"));
        scheduler.SetTimesteps(steps);
        check.Exact<double>("timesteps", scheduler.Timesteps, [.. @case.GetProperty("timesteps").EnumerateArray().Select(e => e.GetDouble())]);
        if (scheduler.InitNoiseSigma != 1.0) throw new CaseProblem($"init_noise_sigma {scheduler.InitNoiseSigma}: the cases start from x_T as is");

        var xT = file.Load("x_T");
        var cond = file.Load("cond");
        int batch = (int)xT.shape[0];
        if (@case.GetProperty("batch").GetInt32() != batch) throw new CaseProblem($"batch field differs from x_T's batch {batch}");
        var uncond = cfg ? file.Load("uncond") : null;
        var request = new SamplingRequest
        {
            Steps = steps,
            Batch = batch,
            Height = (int)xT.shape[2],
            Width = (int)xT.shape[3],
            Context = cond,
            UnconditionalContext = uncond is null ? null : uncond.shape[0] == batch ? uncond : uncond.expand(cond.shape),
            GuidanceScale = cfg ? @case.GetProperty("guidance_scale").GetDouble() : 1.0,
            InitialNoise = xT,
        };

        using var policy = new DeepCachePolicy(unet, schedule, branch);
        using var recorder = new StepRecorder();
        using var final = CachedSampling.Sample(unet, scheduler, request, policy, [recorder]);
        check.Exact<int>("full_steps", [.. policy.Log.Where(r => r.Full).Select(r => r.Step)], fullSteps);
        check.Exact<int>("partial_steps", [.. policy.Log.Where(r => !r.Full).Select(r => r.Step)], partialSteps);
        if (recorder.Latents.Count != steps) throw new CaseProblem($"{recorder.Latents.Count} steps ran, expected {steps}");
        for (int i = 0; i < steps; i++)
        {
            CompareTensor(file, check, covered, $"eps.{i}", recorder.Predictions[i]);
            CompareTensor(file, check, covered, $"x.{i}", recorder.Latents[i]);
        }
        CompareTensor(file, check, covered, "final", final);

        var semantics = folder.Manifest.GetProperty("branch_semantics").GetProperty(branch.ToString(System.Globalization.CultureInfo.InvariantCulture));
        foreach (var record in policy.Log)
        {
            var problems = record.Full
                ? record.Reused.Select(u => $"full step reused {u}").ToList()
                : SemanticsProblems(unet, policy.Plan, semantics, record.Reused, record.Computed, checkOutside: true);
            if (problems.Count > 0) throw new CaseProblem($"step {record.Step}: {problems[0]}");
        }
    }

    /// <summary>
    /// Differences between what a partial step reused/computed and the manifest's logged modules: the reused sets
    /// must be equal, as must the computed units; every unit must be classified by the manifest; with
    /// <paramref name="checkOutside"/>, the always-computed modules that are call sites of our model (conv_in,
    /// time_embedding) must have run. Modules that are not call sites (conv_norm_out, conv_out) are not compared.
    /// </summary>
    private static List<string> SemanticsProblems(DiffusionUNet unet, DeepCachePlan plan, JsonElement want,
        IEnumerable<string> reused, IEnumerable<string> computed, bool checkOutside)
    {
        var units = plan.Units.ToHashSet(StringComparer.Ordinal);
        var wantReused = Strings(want.GetProperty("reused"));
        var wantComputed = Strings(want.GetProperty("computed"));
        var gotReused = reused.ToHashSet(StringComparer.Ordinal);
        var gotComputed = computed.ToHashSet(StringComparer.Ordinal);
        var problems = new List<string>();
        Compare("reused", gotReused, wantReused);
        Compare("recomputed units", [.. gotComputed.Where(units.Contains)], [.. wantComputed.Where(units.Contains)]);
        var unclassified = units.Where(u => !wantReused.Contains(u) && !wantComputed.Contains(u)).ToList();
        if (unclassified.Count > 0) problems.Add($"units the manifest does not list: {string.Join(", ", unclassified)}");
        var sitePaths = unet.Seam.Sites.Select(s => s.Path).ToHashSet(StringComparer.Ordinal);
        foreach (var name in wantComputed.Where(n => !units.Contains(n)))
        {
            if (!sitePaths.Contains(name))
            {
                if (!OutputLayers.Contains(name)) problems.Add($"manifest module {name} is not part of our {unet.ClassName}");
            }
            else if (checkOutside && !gotComputed.Contains(name)) problems.Add($"{name} did not run");
        }
        return problems;

        void Compare(string what, HashSet<string> got, HashSet<string> expected)
        {
            var extra = got.Except(expected).Order(StringComparer.Ordinal).ToList();
            var missing = expected.Except(got).Order(StringComparer.Ordinal).ToList();
            if (extra.Count > 0 || missing.Count > 0)
                problems.Add($"{what}: extra [{string.Join(", ", extra)}], missing [{string.Join(", ", missing)}]");
        }
    }

    private static HashSet<string> Strings(JsonElement array) =>
        array.EnumerateArray().Select(e => e.GetString()!).ToHashSet(StringComparer.Ordinal);

    private static int[] Ints(JsonElement array) => [.. array.EnumerateArray().Select(e => e.GetInt32())];

    private static int? NullableInt(JsonElement @case, string name) =>
        @case.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? v.GetInt32() : null;

    private static double? NullableDouble(JsonElement @case, string name) =>
        @case.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? v.GetDouble() : null;

    private static void CompareTensor(SafetensorsFile file, CaseCheck check, HashSet<string> covered, string name, torch.Tensor actual)
    {
        if (!file.Contains(name)) throw new CaseProblem($"expected tensor '{name}' is missing from the case file");
        using var expected = file.Load(name);
        check.Tensor(name, actual, expected);
        covered.Add(name);
    }

}
