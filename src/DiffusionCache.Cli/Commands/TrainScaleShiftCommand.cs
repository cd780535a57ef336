using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using DiffusionCache.Caching.BlockCaching;
using DiffusionCache.Cli.Reporting;
using DiffusionCache.Pipelines;
using DiffusionCache.Schedulers;
using DiffusionCache.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Cli.Commands;

/// <summary><c>diffcache train scaleshift</c>: distils the scale-shift adjustment (Block Caching Sec. 3.4) for one
/// of a class-conditional model's cache schedules, resumably, and writes it beside the schedule, where
/// <c>--cache blockcache</c> picks it up.</summary>
internal static class TrainScaleShiftCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "class-conditional pipeline folder", DefaultValueFactory = _ => TrainCommand.DefaultModel };
        var solver = new Option<string>("--solver") { Description = "ddim, ddpm, plms, dpm++ or euler", DefaultValueFactory = _ => "ddim" };
        var denoisingSteps = new Option<int>("--denoising-steps") { Description = "sampling steps of the schedule", DefaultValueFactory = _ => 50 };
        var schedule = new Option<string?>("--schedule") { Description = "schedule JSON (default: the model's cache/schedule-{solver}-{steps}.json)" };
        var output = new Option<string?>("--out") { Description = "adjustment to write (default: cache/scaleshift-{solver}-{steps}.safetensors in the model)" };
        var steps = new Option<long>("--steps") { Description = "optimizer steps (one student trajectory per batch each)", DefaultValueFactory = _ => 150 };
        var batch = new Option<int>("--batch") { Description = "trajectories per step", DefaultValueFactory = _ => 8 };
        var lr = new Option<double>("--lr") { Description = "peak learning rate (AdamW)", DefaultValueFactory = _ => 3e-3 };
        var guidance = new Option<double>("--guidance") { Description = "classifier-free guidance scale of the trajectories", DefaultValueFactory = _ => 4.0 };
        var checkpoints = new Option<string?>("--checkpoints") { Description = "checkpoint folder (resumes from it; default checkpoints/fashion/scaleshift-{solver}-{steps})" };
        var seed = new Option<long>("--seed") { Description = "seed of conditions and noise", DefaultValueFactory = _ => 0 };
        var command = new Command("scaleshift", "distil the Block Caching scale-shift adjustment for a schedule (student/teacher, Sec. 3.4)")
            { model, solver, denoisingSteps, schedule, output, steps, batch, lr, guidance, checkpoints, seed };
        var runtime = new RuntimeOptions();
        runtime.AddTo(command);
        command.SetAction((parse, cancel) => Task.FromResult(CommandRunner.Run(() =>
        {
            var load = runtime.Apply(parse);
            string modelDir = DefaultPaths.Resolve(parse.GetValue(model)!);
            string solverName = parse.GetValue(solver)!;
            int n = parse.GetValue(denoisingSteps);
            string stem = $"{solverName}-{n}";
            return Execute(modelDir, solverName, n,
                parse.GetValue(schedule) ?? Path.Combine(modelDir, "cache", $"schedule-{stem}.json"),
                parse.GetValue(output) ?? Path.Combine(modelDir, "cache", $"scaleshift-{stem}.safetensors"),
                parse.GetValue(checkpoints) ?? Path.Combine(TrainCommand.DefaultCheckpoints, $"scaleshift-{stem}"),
                parse.GetValue(steps), parse.GetValue(batch), parse.GetValue(lr), parse.GetValue(guidance), parse.GetValue(seed), load, cancel);
        })));
        return command;
    }

    private static int Execute(string modelDir, string solver, int denoisingSteps, string schedulePath, string output,
        string checkpoints, long steps, int batch, double lr, double guidance, long seed, PipelineLoadOptions load, CancellationToken cancel)
    {
        if (!File.Exists(schedulePath)) throw new DiffusionCacheException($"schedule {schedulePath} not found: write one with 'diffcache schedule'");
        if (batch < 1 || steps < 1) throw new DiffusionCacheException("--steps and --batch must be positive");
        if (!(guidance >= 0) || double.IsInfinity(guidance)) throw new DiffusionCacheException($"--guidance must be a finite number >= 0, got {guidance}");
        // The frozen U-Net (student and teacher) runs in the options' compute type on their device; the adjustment
        // trains in float32 beside it (it casts what it adds to the cached value's type).
        using var pipeline = ClassConditionalPipeline.Load(modelDir, load);
        var solverConfig = Solvers.For(solver, pipeline.SchedulerConfig);
        var schedule = CacheSchedule.Load(schedulePath);
        schedule.Validate(pipeline.UNet, solverConfig.ClassName, denoisingSteps);

        manual_seed(seed);
        using var adjustment = ScaleShiftAdjustment.For(pipeline.UNet, schedule);
        adjustment.to(pipeline.UNet.parameters().First().device);
        long conditions = pipeline.NumLabels * 100L;   // labels repeat; noise differs every time
        var options = new TrainingOptions
        {
            CheckpointDir = checkpoints, TotalSteps = steps, BatchSize = batch, LearningRate = lr, Seed = seed,
            EmaDecay = 0.95, CheckpointEvery = 10, WarmupSteps = 10, GradientClip = 1.0,
        };
        Console.WriteLine($"scale-shift: {schedule.Blocks.Count} blocks, {adjustment.parameters().Sum(p => p.numel())} parameters, " +
            $"schedule {schedulePath} (δ={schedule.Delta?.ToString("G4", CultureInfo.InvariantCulture) ?? "hand-written"}, {schedule.SkippedFraction:P0} skipped)");
        var clock = Stopwatch.StartNew();
        using var ema = ProgressView.Run("scaleshift", steps, p => ScaleShiftDistillation.Train(pipeline.UNet, schedule, solverConfig,
            adjustment, (indices, generator) =>
            {
                var labels = (indices % pipeline.NumLabels).data<long>().ToArray();
                return pipeline.Request(labels, seed: 0, denoisingSteps, guidance);
            }, conditions, options, ProgressView.ForTraining(p), cancel));
        ema.CopyTo(adjustment);

        adjustment.Description = new Dictionary<string, string>
        {
            ["schedule"] = Path.GetFileName(schedulePath),
            ["solver"] = solverConfig.ClassName,
            ["num_inference_steps"] = denoisingSteps.ToString(CultureInfo.InvariantCulture),
            ["delta"] = schedule.Delta?.ToString("R", CultureInfo.InvariantCulture) ?? "",
            ["guidance_scale"] = guidance.ToString("R", CultureInfo.InvariantCulture),
            ["optimizer_steps"] = steps.ToString(CultureInfo.InvariantCulture),
            ["batch"] = batch.ToString(CultureInfo.InvariantCulture),
            ["unet_dtype"] = RuntimeOptions.Describe(load).Dtype,
        };
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(output))!);
        adjustment.Save(output);
        LossCurve.Write(Path.Combine(checkpoints, "log.csv"), Path.Combine(checkpoints, "loss.png"), "scale-shift distillation loss (block MSE, student vs teacher)");
        Console.WriteLine($"scaleshift: {steps} steps; wrote {output} ({clock.Elapsed:hh\\:mm\\:ss} this run)");
        return 0;
    }
}
