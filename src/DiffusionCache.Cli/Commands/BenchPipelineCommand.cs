using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using DiffusionCache.Analysis;
using DiffusionCache.Caching;
using DiffusionCache.Formats;
using DiffusionCache.Models.Autoencoders;
using DiffusionCache.Models.Config;
using DiffusionCache.Models.Loading;
using DiffusionCache.Models.Text;
using DiffusionCache.Models.UNets;
using DiffusionCache.Pipelines;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Cli.Commands;

/// <summary>
/// <c>diffcache bench-pipeline</c>: where the time of one text-to-image call goes — tokenize + text encoder, each
/// denoising step (the U-Net with CFG), VAE decode — and the peak memory of loading the folder over its weights'
/// size. Runs on a Stable Diffusion folder, or writes a random-weight SD-1.5 / SD-2.1 folder first.
/// </summary>
internal static class BenchPipelineCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "a Stable Diffusion folder, or sd15 / sd21 (random weights, written to a temporary folder)", DefaultValueFactory = _ => "sd15" };
        var tokenizer = new Option<string>("--tokenizer") { Description = "CLIP tokenizer folder for a random-weight folder", DefaultValueFactory = _ => "../shared/golden/textvae/tokenizer" };
        var size = new Option<int>("--size") { Description = "image side in pixels", DefaultValueFactory = _ => 256 };
        var steps = new Option<int>("--steps") { Description = "denoising steps", DefaultValueFactory = _ => 20 };
        var solver = new Option<string?>("--solver") { Description = "solver (default: the folder's scheduler)" };
        var guidance = new Option<double>("--guidance") { Description = "guidance scale (> 1: classifier-free guidance, batch 2)", DefaultValueFactory = _ => 7.5 };
        var json = new Option<string?>("--json") { Description = "also write the result as JSON" };
        var command = new Command("bench-pipeline", "per-stage time and peak memory of text-to-image") { model, tokenizer, size, steps, solver, guidance, json };
        var runtime = new RuntimeOptions();
        runtime.AddTo(command);
        command.SetAction((parse, cancel) => Task.FromResult(CommandRunner.Run(() => Execute(parse.GetValue(model)!, parse.GetValue(tokenizer)!,
            parse.GetValue(size), parse.GetValue(steps), parse.GetValue(solver), parse.GetValue(guidance), parse.GetValue(json), runtime.Apply(parse), cancel))));
        return command;
    }

    private static int Execute(string model, string tokenizerDir, int size, int steps, string? solver, double guidance, string? json,
        PipelineLoadOptions load, CancellationToken cancel)
    {
        if (size < 8 || steps < 1) throw new DiffusionCacheException("--size must be at least 8 and --steps at least 1");
        string? temp = null;
        try
        {
            string folder = model;
            if (model is "sd15" or "sd21")
            {
                temp = Path.Combine(Path.GetTempPath(), $"diffcache-bench-{model}-{Environment.ProcessId}");
                Console.WriteLine($"writing a random-weight {model} folder to {temp} ...");
                WriteRandomFolder(temp, model, DefaultPaths.Resolve(tokenizerDir));
                folder = temp;
            }
            else if (!StableDiffusionPipeline.IsFolder(model))
                throw new DiffusionCacheException($"--model '{model}': expected sd15, sd21 or a Stable Diffusion folder");

            GC.Collect();
            GC.WaitForPendingFinalizers();
            ProcessMemory.ReleaseFreedMemory();
            double weightsMb = Directory.GetFiles(folder, "*.safetensors", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length) / 1048576.0;
            ProcessMemory.ResetPeak();
            double before = ProcessMemory.CurrentRssMb();
            var clock = Stopwatch.StartNew();
            using var pipeline = StableDiffusionPipeline.Load(folder, load);
            double loadSeconds = clock.Elapsed.TotalSeconds;
            double loadPeakOverWeights = (ProcessMemory.PeakRssMb() - before) / weightsMb;

            using var scheduler = pipeline.CreateScheduler(solver);
            var call = new TextToImage { Prompts = ["a photograph of an astronaut riding a horse"], Steps = steps, GuidanceScale = guidance, Height = size, Width = size };
            // Warm-up (one-time costs: allocator, kernels) with another prompt, so the timed encode is not a cache hit.
            using (pipeline.Generate(scheduler, call with { Prompts = ["warm up"], Steps = 1 }, cancel: cancel)) { }

            clock.Restart();
            var request = pipeline.Request(call);
            double encodeSeconds = clock.Elapsed.TotalSeconds;
            var stepTimes = new StepTimer();
            Tensor latents;
            try
            {
                clock.Restart();
                latents = CachedSampling.Sample(pipeline.UNet, scheduler, request, null, [stepTimes], cancel);
            }
            finally
            {
                request.Context?.Dispose();
                request.UnconditionalContext?.Dispose();
            }
            double denoiseSeconds = clock.Elapsed.TotalSeconds;
            clock.Restart();
            using (latents)
            using (pipeline.Decode(latents)) { }
            double decodeSeconds = clock.Elapsed.TotalSeconds;
            double total = encodeSeconds + denoiseSeconds + decodeSeconds;
            var sorted = stepTimes.Seconds.Order().ToArray();
            var result = new
            {
                model = temp is null ? folder : model,
                dtype = load.Dtype.ToString(),
                size,
                steps = stepTimes.Seconds.Count,
                guidance,
                batch = request.UsesGuidance ? 2 : 1,
                threads = get_num_threads(),
                weights_mb = weightsMb,
                load_seconds = loadSeconds,
                load_peak_over_weights = loadPeakOverWeights,
                encode_seconds = encodeSeconds,
                step_median_seconds = sorted[sorted.Length / 2],
                denoise_seconds = denoiseSeconds,
                decode_seconds = decodeSeconds,
                total_seconds = total,
                unet_share = denoiseSeconds / total,
                other_share = (encodeSeconds + decodeSeconds) / total,
                peak_rss_mb = ProcessMemory.PeakRssMb(),
            };
            Console.WriteLine($"{result.model} ({result.dtype}): {size}x{size}, {result.steps} steps, guidance {guidance} (U-Net batch {result.batch}), {result.threads} threads");
            Console.WriteLine($"  load            {loadSeconds,8:0.00} s   {weightsMb:0} MB of weights, peak memory {loadPeakOverWeights:0.00}x their size");
            Console.WriteLine($"  tokenize+encode {encodeSeconds,8:0.000} s   {100 * encodeSeconds / total:0.0} %");
            Console.WriteLine($"  denoise         {denoiseSeconds,8:0.00} s   {100 * denoiseSeconds / total:0.0} % (median step {result.step_median_seconds:0.000} s)");
            Console.WriteLine($"  VAE decode      {decodeSeconds,8:0.000} s   {100 * decodeSeconds / total:0.0} %");
            Console.WriteLine($"  peak RSS        {result.peak_rss_mb,8:0} MB");
            if (json is not null)
            {
                AtomicFile.WriteAllText(json, JsonSerializer.Serialize(result, new JsonSerializerOptions { WriteIndented = true }));
                Console.WriteLine($"wrote {json}");
            }
            return 0;
        }
        finally
        {
            if (temp is not null && Directory.Exists(temp)) Directory.Delete(temp, true);
        }
    }

    /// <summary>A diffusers-layout SD-1.5 or SD-2.1 folder with random weights (the real configs and tokenizer).</summary>
    internal static void WriteRandomFolder(string dir, string family, string tokenizerDir)
    {
        if (!File.Exists(Path.Combine(tokenizerDir, "vocab.json")))
            throw new DiffusionCacheException($"{tokenizerDir}: no CLIP tokenizer there (pass --tokenizer)");
        Directory.CreateDirectory(dir);
        bool sd2 = family == "sd21";
        using (var unet = new UNet2DConditionModel(sd2 ? UNet2DConditionConfig.StableDiffusion21 : UNet2DConditionConfig.StableDiffusion15))
            LatentPipelineFolder.WriteComponent(dir, "unet", unet.Config.ToJson(), unet);
        using (var vae = new AutoencoderKL(AutoencoderKLConfig.StableDiffusion))
            LatentPipelineFolder.WriteComponent(dir, "vae", vae.Config.ToJson(), vae);
        var textConfig = sd2 ? ClipTextConfig.StableDiffusion2 : ClipTextConfig.StableDiffusion1;
        using (var text = new ClipTextModel(textConfig))
            LatentPipelineFolder.WriteComponent(dir, "text_encoder", textConfig.ToJson(TextEncoderLoader.TextModel), text, TextEncoderLoader.WeightsStem);
        Directory.CreateDirectory(Path.Combine(dir, "tokenizer"));
        foreach (var file in Directory.GetFiles(tokenizerDir))
            File.Copy(file, Path.Combine(dir, "tokenizer", Path.GetFileName(file)), overwrite: true);
        LatentPipelineFolder.WriteScheduler(dir, JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["_class_name"] = "PNDMScheduler", ["beta_start"] = 0.00085, ["beta_end"] = 0.012, ["beta_schedule"] = "scaled_linear",
            ["num_train_timesteps"] = 1000, ["set_alpha_to_one"] = false, ["skip_prk_steps"] = true, ["steps_offset"] = 1,
            ["prediction_type"] = sd2 ? "v_prediction" : "epsilon",
        }));
        AtomicFile.WriteAllText(Path.Combine(dir, "model_index.json"), JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["_class_name"] = StableDiffusionPipeline.PipelineClass,
            ["unet"] = new[] { "diffusers", "UNet2DConditionModel" },
            ["vae"] = new[] { "diffusers", "AutoencoderKL" },
            ["text_encoder"] = new[] { "transformers", "CLIPTextModel" },
            ["tokenizer"] = new[] { "transformers", "CLIPTokenizer" },
            ["scheduler"] = new[] { "diffusers", "PNDMScheduler" },
        }));
    }

    /// <summary>The wall time of each denoising step (bench-pipeline, bench-dtype).</summary>
    internal sealed class StepTimer : IStepObserver
    {
        private readonly Stopwatch _clock = new();
        public List<double> Seconds { get; } = [];
        public void BeginStep(StepInfo step) => _clock.Restart();
        public void EndStep(StepInfo step, Tensor latents) => Seconds.Add(_clock.Elapsed.TotalSeconds);
    }
}
