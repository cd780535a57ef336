using System.Text.Json;
using DiffusionCache.Caching;
using DiffusionCache.Caching.BlockCaching;
using DiffusionCache.Formats.Safetensors;
using DiffusionCache.Models.Loading;
using DiffusionCache.Models.UNets;
using DiffusionCache.Pipelines;
using DiffusionCache.Schedulers;
using TorchSharp;

namespace DiffusionCache.Parity;

/// <summary>
/// Runs the <c>blockcache</c> golden cases (shared/golden/blockcache/README.md, the specification): <c>profile</c>
/// (L1_rel per generation, mean and population std, through <see cref="ProfileRunner"/>), <c>schedule</c> (compute
/// steps from a mean and δ, through <see cref="ScheduleBuilder"/>; exact) and <c>cached-sampling</c> (a
/// <see cref="BlockCachePolicy"/> attached through <see cref="CachedSampling"/>, i.e. the one sampling loop).
/// Every case also checks that our cacheable-block list equals the case's <c>blocks</c>.
/// </summary>
public sealed class BlockCacheParity : CaseParitySuite
{
    /// <summary>Case type: per-generation L1_rel block changes and their mean and std (Block Caching Sec.
    /// 3.2).</summary>
    public const string ProfileCase = "profile";
    /// <summary>Case type: the cache schedule (compute steps per block) from a mean profile and δ (Block Caching Sec.
    /// 3.3).</summary>
    public const string ScheduleCase = "schedule";
    /// <summary>Case type: a whole sampling run with the block cache attached.</summary>
    public const string CachedSamplingCase = "cached-sampling";

    /// <inheritdoc />
    public override string Kind => "blockcache";

    /// <summary>Runs one case; a structural problem (missing field or tensor, refused config) is a failed result
    /// with the reason as its detail.</summary>
    public override ParityResult RunCase(GoldenFolder folder, JsonElement @case)
    {
        string type = CaseType(@case);
        Func<string, bool> isInput = type switch
        {
            ProfileCase => name => name == "uncond" || name.StartsWith("x_T.", StringComparison.Ordinal) || name.StartsWith("cond.", StringComparison.Ordinal),
            ScheduleCase => name => name == "mean",
            _ => name => name is "x_T" or "cond" or "uncond",
        };
        return RunTensorCase(folder, @case, isInput, (file, check, covered) =>
        {
            switch (type)
            {
                case ProfileCase: RunProfile(folder, @case, file, check, covered); break;
                case ScheduleCase: RunSchedule(folder, @case, file, check, covered); break;
                case CachedSamplingCase: RunCached(folder, @case, file, check, covered); break;
                default: throw new CaseProblem($"unknown case type '{type}'");
            }
        });
    }

    private static void RunProfile(GoldenFolder folder, JsonElement @case, SafetensorsFile file, CaseCheck check, HashSet<string> covered)
    {
        using var unet = LoadModel(folder, @case, out string modelId);
        var targets = CheckBlocks(folder, @case, modelId, unet, check);
        int p = @case.GetProperty("num_conditions").GetInt32();
        int s = @case.GetProperty("num_seeds").GetInt32();
        if (@case.GetProperty("std_ddof").GetInt32() != 0) throw new CaseProblem("only std_ddof 0 (population std) is specified");
        // The manifest's generation order must be ours: g = p*S + s.
        check.Exact<string>("generations",
            [.. @case.GetProperty("generations").EnumerateArray().Select(g => $"{g.GetProperty("g").GetInt32()}:{g.GetProperty("condition").GetInt32()}/{g.GetProperty("seed").GetInt32()}")],
            [.. Enumerable.Range(0, p * s).Select(g => $"{g}:{g / s}/{g % s}")]);

        using var inputs = new TensorFileProfileInputs(file.FilePath, p, s, @case.GetProperty("guidance_scale").GetDouble());
        var settings = new ProfileSettings
        {
            ModelId = modelId,
            Scheduler = ReadSchedulerConfig(@case),
            SchedulerJson = @case.GetProperty("scheduler_config").Clone(),
            Steps = @case.GetProperty("num_inference_steps").GetInt32(),
            Targets = targets,
        };
        var profile = ProfileRunner.Run(unet, settings, inputs);
        check.Exact<double>("timesteps", profile.Timesteps, Doubles(@case.GetProperty("timesteps")));
        for (int g = 0; g < profile.Generations.Count; g++)
            Compare(file, check, covered, $"l1rel.{g}", Table(profile.Generations[g].L1Rel));
        Compare(file, check, covered, "mean", Table(profile.Mean));
        Compare(file, check, covered, "std", Table(profile.Std));
    }

    private static void RunSchedule(GoldenFolder folder, JsonElement @case, SafetensorsFile file, CaseCheck check, HashSet<string> covered)
    {
        string profileId = @case.GetProperty("profile").GetString()!;
        var profileCase = folder.Manifest.GetProperty("cases").EnumerateArray()
            .FirstOrDefault(c => CaseId(c) == profileId);
        if (profileCase.ValueKind != JsonValueKind.Object) throw new CaseProblem($"profile case '{profileId}' not in the manifest");
        using var unet = LoadModel(folder, profileCase, out string modelId);
        var targets = CheckBlocks(folder, @case, modelId, unet, check);

        using var meanTensor = file.Load("mean", torch.ScalarType.Float64);
        var mean = Rows(meanTensor);
        int n = @case.GetProperty("num_inference_steps").GetInt32();
        if (mean.Length == 0 || mean[0].Length != n) throw new CaseProblem($"mean is not [B, {n}]");
        double delta = @case.GetProperty("delta").GetDouble();
        var schedule = ScheduleBuilder.FromProfile(new BlockProfile
        {
            Model = modelId,
            Solver = profileCase.GetProperty("scheduler").GetString()!,
            NumInferenceSteps = n,
            Timesteps = Doubles(profileCase.GetProperty("timesteps")),
            Targets = targets,
            Blocks = targets.Paths(unet),
            NumConditions = 1,
            NumSeeds = 1,
            Generations = [new ProfileGeneration(0, 0, 0, mean)],
            Mean = mean,
            Std = [.. mean.Select(row => new double[row.Length])],
        }, delta);
        schedule.Validate(unet, schedule.Solver, n);

        var expected = @case.GetProperty("compute_steps").EnumerateArray().Select(Ints).ToList();
        if (expected.Count != schedule.Blocks.Count) throw new CaseProblem($"{expected.Count} compute-step lists for {schedule.Blocks.Count} blocks");
        for (int i = 0; i < expected.Count; i++)
            check.Exact<int>($"compute_steps[{schedule.Blocks[i]}]", schedule.ComputeSteps[i], expected[i]);
        var mask = schedule.ComputeMask().Select(row => row.Select(b => b ? 1L : 0L).ToArray()).ToArray();
        Compare(file, check, covered, "compute_mask", torch.tensor(mask.SelectMany(r => r).ToArray(), [mask.Length, n]));
        check.Exact<int>("num_computed", [schedule.NumComputed], [@case.GetProperty("num_computed").GetInt32()]);
        check.Exact<int>("num_block_evaluations", [schedule.NumBlockEvaluations], [@case.GetProperty("num_block_evaluations").GetInt32()]);
        check.Scalar("skipped_fraction", schedule.SkippedFraction, @case.GetProperty("skipped_fraction").GetDouble());
    }

    private static void RunCached(GoldenFolder folder, JsonElement @case, SafetensorsFile file, CaseCheck check, HashSet<string> covered)
    {
        using var unet = LoadModel(folder, @case, out string modelId);
        var targets = CheckBlocks(folder, @case, modelId, unet, check);
        int n = @case.GetProperty("num_inference_steps").GetInt32();
        var config = ReadSchedulerConfig(@case);
        var schedule = new CacheSchedule
        {
            Model = modelId,
            Solver = config.ClassName,
            NumInferenceSteps = n,
            Steps = n,
            Targets = targets,
            Blocks = [.. @case.GetProperty("blocks").EnumerateArray().Select(b => b.GetString()!)],
            ComputeSteps = [.. @case.GetProperty("compute_steps").EnumerateArray().Select(Ints)],
        };
        var mode = @case.GetProperty("mode").GetString() switch
        {
            "residual" => BlockCacheMode.Residual,
            "output" => BlockCacheMode.Output,
            var m => throw new CaseProblem($"unknown cache mode '{m}'"),
        };
        var xT = file.Load("x_T");
        var request = new SamplingRequest
        {
            Steps = n,
            Batch = (int)xT.shape[0],
            Height = (int)xT.shape[2],
            Width = (int)xT.shape[3],
            Context = file.Load("cond"),
            UnconditionalContext = file.Load("uncond"),
            GuidanceScale = @case.GetProperty("guidance_scale").GetDouble(),
            InitialNoise = xT,
        };

        using var policy = new BlockCachePolicy(unet, schedule, config.ClassName, mode);
        using var scheduler = SchedulerFactory.Create(config);
        using var recorder = new StepRecorder();
        using var final = CachedSampling.Sample(unet, scheduler, request, policy, [recorder]);
        check.Exact<double>("timesteps", scheduler.Timesteps, Doubles(@case.GetProperty("timesteps")));
        if (recorder.Latents.Count != n) throw new CaseProblem($"{recorder.Latents.Count} steps ran, expected {n}");
        for (int k = 0; k < n; k++)
        {
            Compare(file, check, covered, $"eps.{k}", recorder.Predictions[k]);
            Compare(file, check, covered, $"x.{k}", recorder.Latents[k]);
        }
        Compare(file, check, covered, "final", final);

        // What the policy did is what the schedule says.
        for (int i = 0; i < schedule.Blocks.Count; i++)
        {
            var (computed, reused) = policy.Statistics[schedule.Blocks[i]];
            check.Exact<long>($"computed/reused[{schedule.Blocks[i]}]", [computed, reused],
                [schedule.ComputeSteps[i].Count, n - schedule.ComputeSteps[i].Count]);
        }
        check.Scalar("skipped_fraction", schedule.SkippedFraction, @case.GetProperty("skipped_fraction").GetDouble(), new Tolerance(1e-12, 0));
        if (@case.GetProperty("equals_uncached").GetBoolean())
        {
            using var plain = SchedulerFactory.Create(config);
            using var uncached = DiffusionSampler.Sample(unet, plain, request);
            check.Exact<bool>("bitwise equal to uncached sampling", [final.equal(uncached).all().item<bool>()], [true]);
        }
    }

    private static DiffusionUNet LoadModel(GoldenFolder folder, JsonElement @case, out string modelId)
    {
        modelId = @case.GetProperty("model").GetString()!;
        if (!folder.Manifest.GetProperty("models").TryGetProperty(modelId, out var model))
            throw new CaseProblem($"model '{modelId}' is not in the manifest's models");
        return UNetLoader.Load(folder.Resolve(model.GetProperty("path").GetString()!));
    }

    /// <summary>Our cacheable blocks of the case's targets must be exactly the case's <c>blocks</c> and the
    /// manifest's list for the model.</summary>
    private static BlockCachingTargets CheckBlocks(GoldenFolder folder, JsonElement @case, string modelId, DiffusionUNet unet, CaseCheck check)
    {
        var targets = BlockCachingTargets.Parse(@case.GetProperty("targets").GetString()!);
        var ours = targets.Paths(unet);
        check.Exact<string>("blocks", ours, [.. @case.GetProperty("blocks").EnumerateArray().Select(b => b.GetString()!)]);
        var listed = folder.Manifest.GetProperty("models").GetProperty(modelId).GetProperty($"{targets.Name}_blocks");
        check.Exact<string>($"models.{modelId}.{targets.Name}_blocks", ours, [.. listed.EnumerateArray().Select(b => b.GetString()!)]);
        return targets;
    }

    private static SchedulerConfig ReadSchedulerConfig(JsonElement @case) =>
        SchedulerConfig.FromJson(@case.GetProperty("scheduler_config"), @case.GetProperty("scheduler").GetString());

    private static double[] Doubles(JsonElement list) => [.. list.EnumerateArray().Select(e => e.GetDouble())];

    private static int[] Ints(JsonElement list) => [.. list.EnumerateArray().Select(e => e.GetInt32())];

    private static torch.Tensor Table(double[][] rows) =>
        torch.tensor(rows.SelectMany(r => r).ToArray(), [rows.Length, rows.Length == 0 ? 0 : rows[0].Length], torch.ScalarType.Float64);

    private static double[][] Rows(torch.Tensor table)
    {
        if (table.dim() != 2) throw new CaseProblem($"expected a [B, N] table, got [{string.Join(",", table.shape)}]");
        var flat = table.contiguous().data<double>().ToArray();
        int cols = (int)table.shape[1];
        return [.. Enumerable.Range(0, (int)table.shape[0]).Select(i => flat.AsSpan(i * cols, cols).ToArray())];
    }

    private static void Compare(SafetensorsFile file, CaseCheck check, HashSet<string> covered, string name, torch.Tensor actual)
    {
        if (!file.Contains(name)) throw new CaseProblem($"expected tensor '{name}' is missing from the case file");
        using var expected = file.Load(name);
        check.Tensor(name, actual, expected);
        covered.Add(name);
    }

}
