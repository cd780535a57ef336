using System.CommandLine;
using System.Diagnostics;
using DiffusionCache.Analysis;
using DiffusionCache.Cli.Reporting;
using DiffusionCache.Formats;
using DiffusionCache.Data;
using DiffusionCache.Caching;
using DiffusionCache.Caching.Adaptive;
using DiffusionCache.Caching.BlockCaching;
using DiffusionCache.Pipelines;
using static TorchSharp.torch;

namespace DiffusionCache.Cli.Commands;

/// <summary><c>diffcache generate</c>: the main job. Samples every class of the embedded model for a few seeds
/// and writes a labelled grid PNG; with a Stable Diffusion folder or single-file checkpoint and <c>--prompt</c>,
/// text-to-image.</summary>
internal static class GenerateCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "a Stable Diffusion 1.x/2.x or SDXL diffusers folder, or single-file checkpoint (.safetensors in the original LDM/SGM layout, as A1111/ComfyUI load; with --prompt), or a class-conditional pipeline folder (default: the embedded model)", DefaultValueFactory = _ => TrainCommand.DefaultModel };
        var config = new Option<string?>("--config") { Description = "with a single-file --model: a diffusers Stable Diffusion folder whose unet, vae, text_encoder and scheduler configs (and tokenizer) describe the checkpoint (default: the family's defaults; SD 2.x: 768x768 v-prediction)" };
        var output = new Option<string?>("--out") { Description = "the grid PNG to write (embedded model; default out/samples.png), or the folder for one PNG per image (text-to-image; default out)" };
        var seeds = new Option<int>("--seeds") { Description = "seeds to sample (consecutive from --seed): grid columns, or one image each per prompt", DefaultValueFactory = _ => 4 };
        var steps = new Option<int>("--steps") { Description = "denoising steps", DefaultValueFactory = _ => 50 };
        var guidance = new Option<double?>("--guidance") { Description = "classifier-free guidance scale (default 4 for the embedded model, 7.5 for text-to-image; 1 = off)" };
        var solver = new Option<string?>("--solver") { Description = "ddim, ddpm, plms, dpm++ or euler (default: ddim for the embedded model, the folder's own scheduler for text-to-image)" };
        var firstSeed = new Option<long>("--seed") { Description = "the first seed", DefaultValueFactory = _ => 0 };
        var cache = new Option<string?>("--cache") { Description = "cache policy: " + CacheSpec.Help + " (blockcache: the schedule the model ships for this solver and step count, in MODEL/cache/; default: blockcache:ss where the model ships a scale-shift adjustment for them too, else blockcache)" };
        var prompt = new Option<string?>("--prompt") { Description = "text-to-image: the prompt (needs a Stable Diffusion --model)" };
        var negative = new Option<string?>("--negative-prompt") { Description = "text-to-image: what the image should not show (default: the empty prompt)" };
        var size = new Option<int?>("--size") { Description = "text-to-image: height and width in pixels (default: the U-Net's sample size times the VAE's factor)" };
        var height = new Option<int?>("--height") { Description = "text-to-image: height in pixels (overrides --size)" };
        var width = new Option<int?>("--width") { Description = "text-to-image: width in pixels (overrides --size)" };
        var perPrompt = new Option<int>("--images-per-prompt") { Description = "text-to-image: images per seed (one batch)", DefaultValueFactory = _ => 1 };
        var clipSkip = new Option<int>("--clip-skip") { Description = "text-to-image: condition on layer L-k of the text encoder (0 = last layer)", DefaultValueFactory = _ => 0 };
        var runtime = new RuntimeOptions();
        var command = new Command("generate", "the main job: sample every class of the embedded model as a labelled grid, or text-to-image with a Stable Diffusion folder")
        {
            model, config, output, seeds, steps, guidance, solver, firstSeed, cache, prompt, negative, size, height, width, perPrompt, clipSkip,
        };
        runtime.AddTo(command);
        command.SetAction((parse, cancel) => Task.FromResult(CommandRunner.Run(() =>
        {
            var load = runtime.Apply(parse);
            string modelDir = DefaultPaths.Resolve(parse.GetValue(model)!);
            string? text = parse.GetValue(prompt), configDir = parse.GetValue(config);
            bool singleFile = File.Exists(modelDir);
            if (configDir is not null && !singleFile)
                throw new DiffusionCacheException($"--config describes a single-file checkpoint; {modelDir} is not a file");
            if (singleFile || TextToImagePipeline.IsTextToImageFolder(modelDir))
            {
                if (text is null) throw new DiffusionCacheException($"{modelDir} is a text-to-image model: give --prompt");
                return TextToImageJob.Run(new TextToImageArgs(modelDir, text, parse.GetValue(negative), parse.GetValue(output) ?? "out",
                    parse.GetValue(seeds), parse.GetValue(firstSeed), parse.GetValue(steps), parse.GetValue(guidance) ?? 7.5, parse.GetValue(solver),
                    parse.GetValue(height) ?? parse.GetValue(size), parse.GetValue(width) ?? parse.GetValue(size), parse.GetValue(perPrompt),
                    parse.GetValue(clipSkip), parse.GetValue(cache)) { ConfigDir = configDir, Load = load }, cancel);
            }
            if (text is not null || parse.GetValue(negative) is not null)
                throw new DiffusionCacheException($"--prompt needs a Stable Diffusion folder or single-file checkpoint; {modelDir} is neither (no model_index.json naming a StableDiffusionPipeline or StableDiffusionXLPipeline)");
            return Execute(modelDir, parse.GetValue(output) ?? "out/samples.png", parse.GetValue(seeds), parse.GetValue(steps),
                parse.GetValue(guidance) ?? 4.0, parse.GetValue(solver) ?? "ddim", parse.GetValue(firstSeed), parse.GetValue(cache), load, cancel);
        })));
        return command;
    }

    private static int Execute(string modelDir, string output, int seeds, int steps, double guidance, string solver, long firstSeed,
        string? cacheChoice, PipelineLoadOptions load, CancellationToken cancel)
    {
        if (seeds < 1) throw new DiffusionCacheException("--seeds must be at least 1");
        AtomicFile.EnsureWritable(output);   // before any sampling, not after it
        var clock = Stopwatch.StartNew();
        using var pipeline = ClassConditionalPipeline.Load(modelDir, load);
        using var scheduler = pipeline.CreateScheduler(solver);
        var labels = Enumerable.Range(0, pipeline.NumLabels).Select(l => (long)l).ToArray();
        double loadSeconds = clock.Elapsed.TotalSeconds;
        scheduler.SetTimesteps(steps);   // validates the step count before any work; PLMS runs one extra call
        int calls = scheduler.Timesteps.Count;
        using var cache = CacheChoice.Resolve(cacheChoice ?? CacheChoice.Default(pipeline, solver, steps), pipeline, solver, steps);

        // One short untimed generation first, so that one-time costs (JIT, allocator warm-up) do not bias the timing.
        using (var warm = pipeline.CreateScheduler(solver))
        using (pipeline.Generate(warm, labels, firstSeed, Math.Min(2, steps), guidance, cancel: cancel)) { }

        // The speedup is measured, not assumed: on the first pairs of seeds the same seed also runs uncached, the two
        // interleaved in alternating order; the first pair warms the cached path and counts only when it is the only one.
        int pairs = cache.Create is null ? 0 : Math.Min(seeds, 3);
        var columns = new List<Tensor>();
        var ratios = new List<double>();
        CacheSchedule? decisions = null;
        double psnr = double.NaN;
        var cpu = new CpuShare();
        var sampling = Stopwatch.StartNew();
        ProgressView.Run("generate", (long)(seeds + pairs) * calls, progress =>
        {
            long done = 0;
            Tensor Column(long seed, bool cached, string status)
            {
                var counter = new StepCounter(progress, done, status);
                using var policy = cached ? cache.Create?.Invoke() : null;
                var images = pipeline.Generate(scheduler, labels, seed, steps, guidance, policy, [counter], cancel);
                done += calls;
                // What a profile-free policy decided, for the lifetime plot (first cached generation).
                if (policy is OnlineBlockCachePolicy online && decisions is null)
                    decisions = online.DecisionsAsSchedule(pipeline.SolverClass(solver), steps);
                return images;
            }
            for (int s = 0; s < seeds; s++)
            {
                long seed = firstSeed + s;
                if (s >= pairs)
                {
                    columns.Add(Column(seed, true, $"seed {seed}"));
                    continue;
                }
                var timing = new double[2];
                Tensor? uncached = null;
                foreach (bool cached in s % 2 == 0 ? new[] { true, false } : [false, true])
                {
                    var watch = Stopwatch.StartNew();
                    var images = Column(seed, cached, cached ? $"seed {seed}" : $"seed {seed} uncached, for the speedup");
                    timing[cached ? 0 : 1] = watch.Elapsed.TotalSeconds;
                    if (cached) columns.Add(images); else uncached = images;
                }
                using (uncached)
                    if (s == 0) psnr = DiffusionCache.Evaluation.ImageMetrics.Psnr(columns[0], uncached!, 2.0);
                ratios.Add(timing[1] / timing[0]);
            }
            return 0;
        });
        sampling.Stop();
        double share = cpu.Share(get_num_threads());

        string speed = "";
        if (ratios.Count > 0)
        {
            var counted = (ratios.Count > 1 ? ratios.Skip(1) : ratios).Order().ToArray();
            double ratio = counted[counted.Length / 2];
            string verdict = ratio >= 1 ? $"{ratio:0.00}x faster than uncached" : $"{ratio:0.00}x: slower than uncached";
            speed = $"{cache.Name}: {verdict} (median of {counted.Length} interleaved cached/uncached pair{(counted.Length > 1 ? "s" : "")} " +
                $"of seeds{(ratios.Count > 1 ? $" {firstSeed + 1}.." : " ")}{firstSeed + ratios.Count - 1}), PSNR {psnr:0.0} dB vs uncached on seed {firstSeed}";
            if (ratios.Count == 1) speed += "; one pair, which also warmed up the cached path: use more --seeds for a firmer figure";
            if (share < 0.75)
                speed += $"\nwarning: this process got {share:P0} of its {get_num_threads()} threads' time while sampling: another process was busy, " +
                    "so the speedup above says little (run it on an otherwise idle machine)";
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
        if (decisions is not null) WriteDecisions(decisions, output, CacheChoice.ShippedSchedule(pipeline, solver, steps));
        Console.WriteLine($"wrote {Path.GetFullPath(output)}");
        Console.WriteLine($"time: {clock.Elapsed.TotalSeconds:0.0} s total ({loadSeconds:0.0} s loading, {sampling.Elapsed.TotalSeconds:0.0} s sampling " +
            $"incl. {pairs} uncached column{(pairs == 1 ? "" : "s")} for the speedup)");
        return 0;
    }

    /// <summary>Online Block Caching's decisions of seed <c>firstSeed</c> as a schedule (JSON) and its lifetime plot
    /// (Fig. 4) beside the samples, and how they compare with the profiled schedule the model ships, if any.</summary>
    private static void WriteDecisions(CacheSchedule decisions, string output, string shipped)
    {
        string stem = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(output))!, Path.GetFileNameWithoutExtension(output) + "-decisions");
        decisions.Save(stem + ".json");
        SchedulePlot.Write(decisions, stem + ".png");
        string line = $"online decisions: {decisions.NumComputed} of {decisions.NumBlockEvaluations} block evaluations computed " +
            $"({decisions.SkippedFraction:P0} skipped); wrote {stem}.json and .png";
        if (File.Exists(shipped))
        {
            var profiled = CacheSchedule.Load(shipped);
            if (profiled.Blocks.SequenceEqual(decisions.Blocks) && profiled.Steps == decisions.Steps)
            {
                var a = decisions.ComputeMask();
                var b = profiled.ComputeMask();
                int agree = a.Select((row, i) => row.Where((v, k) => v == b[i][k]).Count()).Sum();
                line += $"; the profiled schedule (δ={profiled.Delta:G3}) computes {profiled.NumComputed}, and the two agree on " +
                    $"{(double)agree / decisions.NumBlockEvaluations:P0} of the block evaluations";
            }
        }
        Console.WriteLine(line);
    }

    /// <summary>Feeds the progress bar from the sampling loop's steps.</summary>
    private sealed class StepCounter(IProgress<(long Done, string Status)> progress, long offset, string status) : IStepObserver
    {
        public void EndStep(StepInfo step, Tensor latents) => progress.Report((offset + step.Index + 1, status));
    }
}
