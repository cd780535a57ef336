using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using DiffusionCache.Caching.BlockCaching;
using DiffusionCache.Cli.Reporting;
using DiffusionCache.Formats;
using DiffusionCache.Pipelines;
using DiffusionCache.Schedulers;
using DiffusionCache.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Cli.Commands;

/// <summary><c>diffcache train scaleshift</c>: distils the scale-shift adjustment (Block Caching Sec. 3.4) for one
/// of a class-conditional model's cache schedules, resumably, and writes it beside the schedule, where
/// <c>--cache blockcache:ss</c> picks it up (the shipped schedule) — or, for another schedule or a variant, where
/// <c>--out</c> says. Records the variant, the training time and the final losses in the adjustment's metadata, in
/// <c>summary.json</c> in the checkpoint folder and on the console; <c>--eval-mse N</c> adds block and output MSE on N
/// held-out trajectories against caching without the adjustment.</summary>
internal static class TrainScaleShiftCommand
{
    /// <summary>The default held-out seed of <c>--eval-mse</c>: one no default training job draws from, and the same
    /// for every variant so that they are measured on the same trajectories.</summary>
    public const long DefaultEvalSeed = 1_000_003;

    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "class-conditional pipeline folder", DefaultValueFactory = _ => TrainCommand.DefaultModel };
        var solver = new Option<string>("--solver") { Description = "ddim, ddpm, plms, dpm++ or euler", DefaultValueFactory = _ => "ddim" };
        var denoisingSteps = new Option<int>("--denoising-steps") { Description = "sampling steps of the schedule", DefaultValueFactory = _ => 50 };
        var schedule = new Option<string?>("--schedule") { Description = "schedule JSON, any targets (default: the model's cache/schedule-{solver}-{steps}.json)" };
        var output = new Option<string?>("--out")
        {
            Description = "adjustment to write (default: the model's cache/scaleshift-{solver}-{steps}.safetensors for the shipped schedule " +
                "and default settings; otherwise beside the schedule, SCHEDULE.scaleshift[-VARIANT].safetensors)",
        };
        var steps = new Option<long>("--steps") { Description = "optimizer steps (one student trajectory per batch each)", DefaultValueFactory = _ => 150 };
        var batch = new Option<int>("--batch") { Description = "trajectories per step", DefaultValueFactory = _ => 8 };
        var lr = new Option<double>("--lr") { Description = "peak learning rate (AdamW)", DefaultValueFactory = _ => 3e-3 };
        var guidance = new Option<double>("--guidance") { Description = "classifier-free guidance scale of the trajectories", DefaultValueFactory = _ => 4.0 };
        var checkpoints = new Option<string?>("--checkpoints")
        {
            Description = "checkpoint folder (resumes from it; default checkpoints/fashion/scaleshift-{solver}-{steps}[-SCHEDULE][-VARIANT])",
        };
        var seed = new Option<long>("--seed") { Description = "seed of conditions and noise", DefaultValueFactory = _ => 0 };
        var blockLoss = new Option<double>("--block-loss") { Description = "weight of the per-block MSE, student vs teacher (the paper's loss)", DefaultValueFactory = _ => 1.0 };
        var outputLoss = new Option<double>("--output-loss")
        {
            Description = "weight of the MSE between the student's and the teacher's guided U-Net output (as the solver sees it); " +
                "0: the paper's loss alone, which did not beat plain caching on the embedded model (docs/paper/scale-shift.md); " +
                "--block-loss 0 --output-loss 1 trains on the output alone",
            DefaultValueFactory = _ => ScaleShiftDistillationOptions.Recommended.OutputLossWeight,
        };
        var unroll = new Option<int>("--unroll")
        {
            Description = "denoising steps a gradient reaches through: windows of K steps keep the sample and cached values on the " +
                "graph (1: each step alone). Memory grows about linearly with K (K student passes' activations held at once)",
            DefaultValueFactory = _ => 1,
        };
        var teacherTrajectory = new Option<bool>("--teacher-trajectory")
        {
            Description = "the teacher follows its own uncached trajectory from the same x_T and blocks are matched step by step " +
                "(default: the teacher runs on the student's sample, the paper's Sec. 3.4)",
        };
        var evalMse = new Option<int>("--eval-mse")
        {
            Description = "after training, block and output MSE of the adjustment and of plain caching on N held-out trajectories " +
                "(teacher on the student's and on its own trajectory); 0: none",
            DefaultValueFactory = _ => 0,
        };
        var evalSeed = new Option<long>("--eval-seed") { Description = "seed of the held-out trajectories", DefaultValueFactory = _ => DefaultEvalSeed };
        var evalOnly = new Option<bool>("--eval-only") { Description = "do not train: measure the adjustment at --out (with --eval-mse N, default 16)" };
        var command = new Command("scaleshift", "distil the Block Caching scale-shift adjustment for a schedule (student/teacher, Sec. 3.4)")
        {
            model, solver, denoisingSteps, schedule, output, steps, batch, lr, guidance, checkpoints, seed,
            blockLoss, outputLoss, unroll, teacherTrajectory, evalMse, evalSeed, evalOnly,
        };
        var runtime = new RuntimeOptions();
        runtime.AddTo(command);
        command.SetAction((parse, cancel) => Task.FromResult(CommandRunner.Run(() =>
        {
            var load = runtime.Apply(parse);
            string modelDir = DefaultPaths.Resolve(parse.GetValue(model)!);
            string solverName = parse.GetValue(solver)!;
            int n = parse.GetValue(denoisingSteps);
            string stem = $"{solverName}-{n}";
            var distillation = new ScaleShiftDistillationOptions
            {
                BlockLossWeight = parse.GetValue(blockLoss),
                OutputLossWeight = parse.GetValue(outputLoss),
                Unroll = parse.GetValue(unroll),
                Teacher = parse.GetValue(teacherTrajectory) ? DistillationTeacher.OwnTrajectory : DistillationTeacher.StudentTrajectory,
            };
            distillation.Validate();
            string? scheduleOption = parse.GetValue(schedule);
            string schedulePath = scheduleOption ?? Path.Combine(modelDir, "cache", $"schedule-{stem}.json");
            bool shipped = scheduleOption is null;
            // The shipped adjustment's path and checkpoints belong to the shipped schedule with the default settings:
            // another schedule or a variant must not overwrite or resume them.
            string tag = distillation.TagAgainst(ScaleShiftDistillationOptions.Recommended);
            string scheduleStem = Path.GetFileNameWithoutExtension(schedulePath);
            string defaultOut = shipped && tag.Length == 0
                ? Path.Combine(modelDir, "cache", $"scaleshift-{stem}.safetensors")
                : ScaleShiftAdjustment.DefaultPathFor(schedulePath, tag);
            string defaultCheckpoints = Path.Combine(TrainCommand.DefaultCheckpoints,
                string.Join('-', new[] { $"scaleshift-{stem}", shipped ? "" : scheduleStem, tag }.Where(s => s.Length > 0)));
            int evalCount = parse.GetValue(evalMse);
            bool onlyEval = parse.GetValue(evalOnly);
            if (onlyEval && evalCount == 0) evalCount = 16;
            return Execute(new Args(modelDir, solverName, n, schedulePath, parse.GetValue(output) ?? defaultOut,
                parse.GetValue(checkpoints) ?? defaultCheckpoints, parse.GetValue(steps), parse.GetValue(batch), parse.GetValue(lr),
                parse.GetValue(guidance), parse.GetValue(seed), distillation, evalCount, parse.GetValue(evalSeed), onlyEval, load), cancel);
        })));
        return command;
    }

    private sealed record Args(string ModelDir, string Solver, int DenoisingSteps, string SchedulePath, string Output,
        string Checkpoints, long Steps, int Batch, double Lr, double Guidance, long Seed, ScaleShiftDistillationOptions Distillation,
        int EvalTrajectories, long EvalSeed, bool EvalOnly, PipelineLoadOptions Load);

    private static int Execute(Args a, CancellationToken cancel)
    {
        if (!File.Exists(a.SchedulePath)) throw new DiffusionCacheException($"schedule {a.SchedulePath} not found: write one with 'diffcache schedule'");
        if (a.Batch < 1 || a.Steps < 1) throw new DiffusionCacheException("--steps and --batch must be positive");
        if (a.EvalTrajectories < 0) throw new DiffusionCacheException($"--eval-mse must be >= 0, got {a.EvalTrajectories}");
        if (!(a.Guidance >= 0) || double.IsInfinity(a.Guidance)) throw new DiffusionCacheException($"--guidance must be a finite number >= 0, got {a.Guidance}");
        if (a.EvalOnly && !File.Exists(a.Output)) throw new DiffusionCacheException($"--eval-only: no adjustment at {a.Output} (name it with --out)");
        // The frozen U-Net (student and teacher) runs in the options' compute type on their device; the adjustment
        // trains in float32 beside it (it casts what it adds to the cached value's type).
        using var pipeline = ClassConditionalPipeline.Load(a.ModelDir, a.Load);
        var solverConfig = Solvers.For(a.Solver, pipeline.SchedulerConfig);
        var schedule = CacheSchedule.Load(a.SchedulePath);
        schedule.Validate(pipeline.UNet, solverConfig.ClassName, a.DenoisingSteps);
        var device = pipeline.UNet.parameters().First().device;
        SamplingRequest Requests(Tensor indices, Generator generator)
        {
            var labels = (indices % pipeline.NumLabels).data<long>().ToArray();
            return pipeline.Request(labels, seed: 0, a.DenoisingSteps, a.Guidance);
        }

        if (a.EvalOnly)
        {
            using var trained = ScaleShiftAdjustment.Load(a.Output);
            trained.Validate(schedule);
            trained.to(device);
            Console.WriteLine($"scale-shift: {a.Output} on schedule {a.SchedulePath} ({schedule.Targets}, {schedule.Blocks.Count} blocks)");
            foreach (var (key, value) in trained.Description.OrderBy(kv => kv.Key, StringComparer.Ordinal)) Console.WriteLine($"  {key} = {value}");
            Evaluate(pipeline, schedule, solverConfig, trained, Requests, a);
            return 0;
        }

        AtomicFile.EnsureWritable(a.Output);   // before the training, not after it
        manual_seed(a.Seed);
        using var adjustment = ScaleShiftAdjustment.For(pipeline.UNet, schedule);
        adjustment.to(device);
        long conditions = pipeline.NumLabels * 100L;   // labels repeat; noise differs every time
        var options = new TrainingOptions
        {
            CheckpointDir = a.Checkpoints, TotalSteps = a.Steps, BatchSize = a.Batch, LearningRate = a.Lr, Seed = a.Seed,
            EmaDecay = 0.95, CheckpointEvery = 10, WarmupSteps = 10, GradientClip = 1.0,
        };
        Console.WriteLine($"scale-shift: {schedule.Blocks.Count} {schedule.Targets} blocks, {adjustment.parameters().Sum(p => p.numel())} parameters, " +
            $"schedule {a.SchedulePath} (δ={schedule.Delta?.ToString("G4", CultureInfo.InvariantCulture) ?? "hand-written"}, {schedule.SkippedFraction:P0} skipped)");
        Console.WriteLine($"variant: {a.Distillation}; {a.Steps} steps x batch {a.Batch}, lr {F(a.Lr)}, seed {a.Seed}; checkpoints {a.Checkpoints}");
        var clock = Stopwatch.StartNew();
        using var ema = ProgressView.Run("scaleshift", a.Steps, p => ScaleShiftDistillation.Train(pipeline.UNet, schedule, solverConfig,
            adjustment, Requests, conditions, options, ProgressView.ForTraining(p), cancel, a.Distillation));
        ema.CopyTo(adjustment);
        var summary = ScaleShiftDistillation.Summarize(a.Checkpoints);

        var description = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["schedule"] = Path.GetFileName(a.SchedulePath),
            ["targets"] = schedule.Targets.Name,
            ["solver"] = solverConfig.ClassName,
            ["num_inference_steps"] = a.DenoisingSteps.ToString(CultureInfo.InvariantCulture),
            ["delta"] = schedule.Delta?.ToString("R", CultureInfo.InvariantCulture) ?? "",
            ["guidance_scale"] = F(a.Guidance),
            ["optimizer_steps"] = a.Steps.ToString(CultureInfo.InvariantCulture),
            ["batch"] = a.Batch.ToString(CultureInfo.InvariantCulture),
            ["lr"] = F(a.Lr),
            ["seed"] = a.Seed.ToString(CultureInfo.InvariantCulture),
            ["unet_dtype"] = RuntimeOptions.Describe(a.Load).Dtype,
        };
        foreach (var (key, value) in a.Distillation.Describe()) description[key] = value;
        if (summary is not null)
        {
            description["train_seconds"] = summary.TrainSeconds.ToString("F1", CultureInfo.InvariantCulture);
            description["initial_block_mse"] = F(summary.InitialBlockMse);
            description["final_block_mse"] = F(summary.FinalBlockMse);
            description["final_output_mse"] = F(summary.FinalOutputMse);
            description["final_loss"] = F(summary.FinalLoss);
            description["final_window_steps"] = summary.Window.ToString(CultureInfo.InvariantCulture);
        }
        if (a.EvalTrajectories > 0)
            foreach (var (key, value) in Evaluate(pipeline, schedule, solverConfig, adjustment, Requests, a)) description[key] = value;
        adjustment.Description = description;
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(a.Output))!);
        adjustment.Save(a.Output);
        string summaryJson = JsonSerializer.Serialize(new SortedDictionary<string, string>(description, StringComparer.Ordinal) { ["adjustment"] = Path.GetFullPath(a.Output) },
            new JsonSerializerOptions { WriteIndented = true }) + "\n";
        AtomicFile.Write(Path.Combine(a.Checkpoints, "summary.json"), stream => stream.Write(System.Text.Encoding.UTF8.GetBytes(summaryJson)));
        LossCurve.Write(Path.Combine(a.Checkpoints, "log.csv"), Path.Combine(a.Checkpoints, "loss.png"),
            a.Distillation.OutputLossWeight > 0 ? "scale-shift distillation loss (weighted block + output MSE)" : "scale-shift distillation loss (block MSE, student vs teacher)");
        if (summary is not null)
            Console.WriteLine($"scaleshift: {summary.Steps} steps, {summary.TrainSeconds:F1} s training (all runs); block MSE {G(summary.InitialBlockMse)} -> " +
                $"{G(summary.FinalBlockMse)}, output MSE {G(summary.FinalOutputMse)} (training trajectories, mean of the first/last {summary.Window} steps)");
        Console.WriteLine($"scaleshift: wrote {a.Output} and {Path.Combine(a.Checkpoints, "summary.json")} ({clock.Elapsed:hh\\:mm\\:ss} this run)");
        return 0;
    }

    /// <summary>Held-out block and output MSE of <paramref name="adjustment"/> and of plain caching, with the teacher on
    /// the student's and on its own trajectory; printed, and returned as metadata fields.</summary>
    private static Dictionary<string, string> Evaluate(ClassConditionalPipeline pipeline, CacheSchedule schedule, SchedulerConfig solver,
        ScaleShiftAdjustment adjustment, DistillationRequests requests, Args a)
    {
        var fields = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["eval_trajectories"] = a.EvalTrajectories.ToString(CultureInfo.InvariantCulture),
            ["eval_seed"] = a.EvalSeed.ToString(CultureInfo.InvariantCulture),
        };
        var clock = Stopwatch.StartNew();
        Console.WriteLine($"held-out MSE against the uncached teacher, {a.EvalTrajectories} trajectories (seed {a.EvalSeed}):");
        Console.WriteLine($"  {"teacher on",-20} {"adjustment",-10} {"block MSE",12} {"output MSE",12}");
        foreach (var teacher in new[] { DistillationTeacher.StudentTrajectory, DistillationTeacher.OwnTrajectory })
        {
            string name = ScaleShiftDistillationOptions.TeacherName(teacher);
            foreach (var (label, key, adjusted) in new[] { ("none", "plain", (ScaleShiftAdjustment?)null), ("trained", "adjusted", adjustment) })
            {
                var result = ScaleShiftDistillation.Evaluate(pipeline.UNet, schedule, solver, adjusted, requests, a.EvalTrajectories, a.Batch, a.EvalSeed, teacher);
                Console.WriteLine($"  {name,-20} {label,-10} {G(result.BlockMse),12} {G(result.OutputMse),12}");
                string prefix = $"eval_{name.Replace('-', '_')}_{key}";
                fields[$"{prefix}_block_mse"] = F(result.BlockMse);
                fields[$"{prefix}_output_mse"] = F(result.OutputMse);
            }
        }
        Console.WriteLine($"  ({clock.Elapsed.TotalSeconds:F1} s)");
        return fields;
    }

    private static string F(double v) => v.ToString("R", CultureInfo.InvariantCulture);

    private static string G(double v) => v.ToString("G4", CultureInfo.InvariantCulture);
}
