using System.Diagnostics;
using System.Globalization;
using DiffusionCache.Cli.Reporting;
using DiffusionCache.Formats;
using DiffusionCache.Formats.Images;
using DiffusionCache.Pipelines;
using DiffusionCache.Runtime;

namespace DiffusionCache.Cli.Commands;

/// <summary>What <c>generate --model SD_FOLDER_OR_FILE --prompt …</c> asks for. <see cref="ModelDir"/> is a
/// diffusers folder or a single-file checkpoint; <see cref="ConfigDir"/> describes the latter.</summary>
internal sealed record TextToImageArgs(string ModelDir, string Prompt, string? NegativePrompt, string OutDir, int Seeds, long FirstSeed,
    int Steps, double Guidance, string? Solver, int? Height, int? Width, int ImagesPerPrompt, int ClipSkip, string? Cache)
{
    public string? ConfigDir { get; init; }
    public PipelineLoadOptions? Load { get; init; }
}

/// <summary>Text-to-image with a Stable Diffusion 1.x/2.x or SDXL folder or single-file checkpoint: one PNG per image, each carrying its prompt and settings in
/// a <c>parameters</c> text chunk (the layout other Stable Diffusion tools write and read).</summary>
internal static class TextToImageJob
{
    public static int Run(TextToImageArgs a, CancellationToken cancel)
    {
        if (a.Seeds < 1) throw new DiffusionCacheException("--seeds must be at least 1");
        AtomicFile.EnsureWritable(Path.Combine(a.OutDir, "seed0.png"));   // before loading and sampling, not after
        var clock = Stopwatch.StartNew();
        using var pipeline = TextToImagePipeline.Load(a.ModelDir, a.ConfigDir, a.Load);
        foreach (var note in pipeline.Notes) Console.WriteLine($"note: {note}");
        pipeline.Warning += message => Console.Error.WriteLine($"warning: {message}");
        using var scheduler = pipeline.CreateScheduler(a.Solver);
        scheduler.SetTimesteps(a.Steps);   // validates the step count before any work
        int calls = scheduler.Timesteps.Count;
        using var cache = CacheChoice.Resolve(a.Cache ?? CacheChoice.Default(pipeline, a.Solver, a.Steps), pipeline, a.Solver, a.Steps);
        var call = new TextToImage
        {
            Prompts = [a.Prompt],
            NegativePrompts = a.NegativePrompt is null ? null : [a.NegativePrompt],
            Steps = a.Steps,
            GuidanceScale = a.Guidance,
            Height = a.Height,
            Width = a.Width,
            ImagesPerPrompt = a.ImagesPerPrompt,
            ClipSkip = a.ClipSkip,
        };
        int height = a.Height ?? pipeline.DefaultHeight, width = a.Width ?? pipeline.DefaultWidth;
        pipeline.Validate(call);   // bad sizes and prompts fail here, before any sampling
        Directory.CreateDirectory(a.OutDir);
        double loadSeconds = clock.Elapsed.TotalSeconds;
        string solverName = a.Solver ?? pipeline.SchedulerConfig.ClassName;

        var written = new List<string>();
        var sampling = Stopwatch.StartNew();
        ProgressView.Run("generate", (long)a.Seeds * calls, progress =>
        {
            for (int s = 0; s < a.Seeds; s++)
            {
                long seed = a.FirstSeed + s;
                var counter = new TimedStepCounter(progress, (long)s * calls, $"seed {seed}");
                using var policy = cache.Create?.Invoke();
                using var images = pipeline.Generate(scheduler, call with { Seed = seed }, policy, [counter], cancel);
                for (int i = 0; i < images.shape[0]; i++)
                {
                    string path = Path.Combine(a.OutDir, images.shape[0] == 1 ? $"seed{seed}.png" : $"seed{seed}-{i}.png");
                    using var image = images[i];
                    PngImage.Write(path, image, new Dictionary<string, string>
                    {
                        ["parameters"] = Parameters(a, seed, solverName, height, width, cache.Name, Path.GetFileName(Path.GetFullPath(a.ModelDir))),
                    });
                    written.Add(path);
                }
            }
            return 0;
        });
        sampling.Stop();
        Console.WriteLine($"generated {written.Count} images ({height}x{width}) with {solverName}, {a.Steps} steps, guidance {a.Guidance}, {cache.Name}");
        foreach (var path in written) Console.WriteLine($"wrote {Path.GetFullPath(path)}");
        Console.WriteLine($"time: {clock.Elapsed.TotalSeconds:0.0} s total ({loadSeconds:0.0} s loading, {sampling.Elapsed.TotalSeconds:0.0} s sampling, " +
            $"{sampling.Elapsed.TotalMilliseconds / (a.Seeds * (double)calls):0} ms per step)");
        return 0;
    }

    /// <summary>The <c>parameters</c> text: the prompt, "Negative prompt: …", then "Key: value" pairs, as other
    /// Stable Diffusion tools write it.</summary>
    public static string Parameters(TextToImageArgs a, long seed, string solver, int height, int width, string cache, string model)
    {
        var inv = CultureInfo.InvariantCulture;
        var lines = new List<string> { a.Prompt };
        if (!string.IsNullOrEmpty(a.NegativePrompt)) lines.Add($"Negative prompt: {a.NegativePrompt}");
        var settings = new List<string>
        {
            $"Steps: {a.Steps}", $"Sampler: {solver}", string.Create(inv, $"CFG scale: {a.Guidance}"), $"Seed: {seed}",
            $"Size: {width}x{height}", $"Model: {model}",
        };
        if (a.ClipSkip > 0) settings.Add($"Clip skip: {a.ClipSkip + 1}");
        settings.Add($"Cache: {cache}");
        settings.Add($"Version: DiffusionCache {BuildInfo.Version} ({BuildInfo.Commit[..Math.Min(12, BuildInfo.Commit.Length)]}, libtorch {BuildInfo.LibTorchVersion})");
        lines.Add(string.Join(", ", settings));
        return string.Join("\n", lines);
    }

    /// <summary>Feeds the progress bar from the sampling loop's steps, with the time of the last step.</summary>
    private sealed class TimedStepCounter(IProgress<(long Done, string Status)> progress, long offset, string status) : IStepObserver
    {
        private readonly Stopwatch _step = new();

        public void BeginStep(StepInfo step) => _step.Restart();

        public void EndStep(StepInfo step, TorchSharp.torch.Tensor latents) =>
            progress.Report((offset + step.Index + 1, $"{status} step {step.Index + 1}/{step.Count} {_step.Elapsed.TotalSeconds:0.00} s/step"));
    }
}
