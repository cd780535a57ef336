using System.CommandLine;
using System.Diagnostics;
using DiffusionCache.Cli.Reporting;
using DiffusionCache.Data;
using DiffusionCache.Pipelines;
using static TorchSharp.torch;

namespace DiffusionCache.Cli.Commands;

/// <summary><c>diffcache generate</c>: the main job. Samples every class of the embedded model for a few seeds
/// and writes a labelled grid PNG.</summary>
internal static class GenerateCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "class-conditional pipeline folder", DefaultValueFactory = _ => TrainCommand.DefaultModel };
        var output = new Option<string>("--out") { Description = "PNG to write", DefaultValueFactory = _ => "out/samples.png" };
        var seeds = new Option<int>("--seeds") { Description = "images per class (one column per seed)", DefaultValueFactory = _ => 4 };
        var steps = new Option<int>("--steps") { Description = "denoising steps", DefaultValueFactory = _ => 50 };
        var guidance = new Option<double>("--guidance") { Description = "classifier-free guidance scale (1 = off)", DefaultValueFactory = _ => 4.0 };
        var solver = new Option<string>("--solver") { Description = "ddim, ddpm, plms, dpm++ or euler", DefaultValueFactory = _ => "ddim" };
        var firstSeed = new Option<long>("--seed") { Description = "seed of the first column", DefaultValueFactory = _ => 0 };
        var cache = new Option<string>("--cache") { Description = "blockcache (the model's shipped schedule for this solver and step count), blockcache:ss (with its shipped scale-shift adjustment), a schedule JSON file, deepcache[:N[:branch[:center:pow]]] (default 3, 0: uniform; with center and pow: non-uniform), or none", DefaultValueFactory = _ => "blockcache" };
        var command = new Command("generate", "sample every class of the embedded model and write a labelled grid") { model, output, seeds, steps, guidance, solver, firstSeed, cache };
        command.SetAction((parse, cancel) => Task.FromResult(CommandRunner.Run(() => Execute(parse.GetValue(model)!, parse.GetValue(output)!,
            parse.GetValue(seeds), parse.GetValue(steps), parse.GetValue(guidance), parse.GetValue(solver)!, parse.GetValue(firstSeed),
            parse.GetValue(cache)!, cancel))));
        return command;
    }

    private static int Execute(string modelDir, string output, int seeds, int steps, double guidance, string solver, long firstSeed,
        string cacheChoice, CancellationToken cancel)
    {
        if (seeds < 1) throw new DiffusionCacheException("--seeds must be at least 1");
        var clock = Stopwatch.StartNew();
        using var pipeline = ClassConditionalPipeline.Load(DefaultPaths.Resolve(modelDir));
        using var scheduler = pipeline.CreateScheduler(solver);
        var labels = Enumerable.Range(0, pipeline.NumLabels).Select(l => (long)l).ToArray();
        double loadSeconds = clock.Elapsed.TotalSeconds;
        scheduler.SetTimesteps(steps);   // validates the step count before any work; PLMS runs one extra call
        int calls = scheduler.Timesteps.Count;
        using var cache = CacheChoice.Resolve(cacheChoice, pipeline, solver, steps);

        // One short untimed generation first, so that one-time costs (JIT, allocator warm-up) do not bias the timing.
        using (var warm = pipeline.CreateScheduler(solver))
        using (pipeline.Generate(warm, labels, firstSeed, Math.Min(2, steps), guidance, cancel: cancel)) { }

        var columns = new List<Tensor>();
        var sampling = Stopwatch.StartNew();
        ProgressView.Run("generate", (long)seeds * calls, progress =>
        {
            for (int s = 0; s < seeds; s++)
            {
                var counter = new StepCounter(progress, (long)s * calls, $"seed {firstSeed + s}");
                using var policy = cache.Create?.Invoke();
                columns.Add(pipeline.Generate(scheduler, labels, firstSeed + s, steps, guidance, policy, [counter], cancel));
            }
            return 0;
        });
        sampling.Stop();

        // The speedup is measured, not assumed: the first column again without a cache, in this same run.
        string speed = "";
        if (cache.Create is not null)
        {
            var uncachedClock = System.Diagnostics.Stopwatch.StartNew();
            using var uncached = pipeline.Generate(scheduler, labels, firstSeed, steps, guidance, cancel: cancel);
            uncachedClock.Stop();
            double cachedPerColumn = sampling.Elapsed.TotalSeconds / seeds;
            double psnr = DiffusionCache.Evaluation.ImageMetrics.Psnr(columns[0], uncached, 2.0);
            speed = $"{cache.Name}: {uncachedClock.Elapsed.TotalSeconds / cachedPerColumn:0.00}x faster than uncached (measured on seed {firstSeed}: " +
                $"{uncachedClock.Elapsed.TotalSeconds:0.00} s uncached vs {cachedPerColumn:0.00} s cached per column), PSNR {psnr:0.0} dB vs uncached";
        }

        // Rows are classes, columns seeds: images [seed][label] -> [label][seed].
        using var grid = stack(columns, 1).flatten(0, 1);
        foreach (var c in columns) c.Dispose();
        var names = pipeline.NumLabels == FashionMnist.NumClasses ? FashionMnist.ClassNames : labels.Select(l => $"class {l}").ToArray();
        ImageGrid.Write(output, grid, pipeline.NumLabels, seeds, names,
            Enumerable.Range(0, seeds).Select(s => $"seed {firstSeed + s}").ToArray(), scale: 3,
            title: $"{Path.GetFileName(Path.GetFullPath(modelDir))}: {solver} {steps} steps, guidance {guidance}, {cache.Name}");
        int images = pipeline.NumLabels * seeds;
        Console.WriteLine($"generated {images} images ({pipeline.NumLabels} classes x {seeds} seeds) with {solver}, {steps} steps, guidance {guidance}");
        if (speed.Length > 0) Console.WriteLine(speed);
        Console.WriteLine($"wrote {Path.GetFullPath(output)}");
        Console.WriteLine($"time: {clock.Elapsed.TotalSeconds:0.0} s total ({loadSeconds:0.0} s loading, {sampling.Elapsed.TotalSeconds:0.0} s sampling, " +
            $"{sampling.Elapsed.TotalMilliseconds / images:0} ms per image)");
        return 0;
    }

    /// <summary>Feeds the progress bar from the sampling loop's steps.</summary>
    private sealed class StepCounter(IProgress<(long Done, string Status)> progress, long offset, string status) : IStepObserver
    {
        public void EndStep(StepInfo step, Tensor latents) => progress.Report((offset + step.Index + 1, status));
    }
}
