using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using DiffusionCache.Analysis;
using DiffusionCache.Formats;
using DiffusionCache.Models.Config;
using DiffusionCache.Models.Loading;
using DiffusionCache.Models.UNets;
using DiffusionCache.Pipelines;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Cli.Commands;

/// <summary><c>diffcache bench</c>: times one U-Net forward pass (random weights), median of repeated runs after
/// warm-up. This measures our per-call overhead on top of libtorch's kernels.</summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var config = new Option<string>("--unet-config") { Description = "sd15, sd21, sdxl, or a config.json / model folder", DefaultValueFactory = _ => "sd15" };
        var latent = new Option<int>("--latent") { Description = "latent side", DefaultValueFactory = _ => 32 };
        var batch = new Option<int>("--batch") { Description = "batch size (2 = one image with classifier-free guidance)", DefaultValueFactory = _ => 2 };
        var runs = new Option<int>("--runs") { Description = "timed runs", DefaultValueFactory = _ => 10 };
        var warmup = new Option<int>("--warmup") { Description = "untimed runs first", DefaultValueFactory = _ => 2 };
        var json = new Option<string?>("--json") { Description = "also write the result as JSON to this file" };
        var load = new Option<bool>("--load") { Description = "also save the weights to a temporary folder and load them back, reporting the load's peak memory over the weights' size" };
        var command = new Command("bench", "time a U-Net forward pass") { config, latent, batch, runs, warmup, json, load };
        var runtime = new RuntimeOptions();
        runtime.AddTo(command);
        command.SetAction(parse => CommandRunner.Run(() =>
        {
            var options = runtime.Apply(parse);
            return Execute(parse.GetValue(config)!, parse.GetValue(latent), parse.GetValue(batch), parse.GetValue(runs), parse.GetValue(warmup),
                parse.GetValue(json), parse.GetValue(load), options);
        }));
        return command;
    }

    private static int Execute(string configName, int latent, int batch, int runs, int warmup, string? json, bool load, PipelineLoadOptions options)
    {
        if (latent < 1 || batch < 1 || runs < 1 || warmup < 0) throw new DiffusionCacheException("--latent, --batch and --runs must be positive, --warmup non-negative");
        manual_seed(0);
        var loadResult = load ? MeasureLoad(configName, options) : null;
        using var model = RuntimeOptions.Place(CreateModel(configName), options);
        var device = RuntimeOptions.DeviceOf(options);
        var input = Inputs(model, batch, latent);
        var times = new List<double>();
        using (no_grad())
        {
            for (int i = 0; i < warmup + runs; i++)
            {
                var clock = Stopwatch.StartNew();
                using (var scope = NewDisposeScope())
                {
                    model.Forward(input);
                    if (device.type == DeviceType.CUDA) cuda.synchronize(device);   // kernels run asynchronously: time them all
                }
                clock.Stop();
                if (i >= warmup) times.Add(clock.Elapsed.TotalMilliseconds);
            }
        }
        times.Sort();
        double median = times.Count % 2 == 1 ? times[times.Count / 2] : (times[times.Count / 2 - 1] + times[times.Count / 2]) / 2;
        var (dtypeName, deviceName) = RuntimeOptions.Describe(options);
        var result = new
        {
            unet_config = configName,
            @class = model.ClassName,
            dtype = dtypeName,
            device = deviceName,
            latent,
            batch,
            runs,
            warmup,
            threads = torch.get_num_threads(),
            convolutions = Runtime.ConvolutionKernels.Choice.ToString().ToLowerInvariant(),
            convolution_decisions = Runtime.ConvolutionKernels.Decisions.ToDictionary(d => d.Key, d => d.Value),
            median_ms = median,
            min_ms = times[0],
            max_ms = times[^1],
            peak_rss_mb = ProcessMemory.PeakRssMb(),
            parameters = model.parameters().Sum(p => p.numel()),
            load_seconds = loadResult?.Seconds,
            load_peak_over_weights = loadResult?.PeakOverWeights,
            weights_mb = loadResult?.WeightsMb,
        };
        Console.WriteLine($"{model.ClassName} ({configName}, {dtypeName} on {deviceName}) latent {latent}x{latent} batch {batch}, {torch.get_num_threads()} threads, {Runtime.ConvolutionKernels.Choice.ToString().ToLowerInvariant()} convolutions: " +
            $"median {median:0.0} ms (min {times[0]:0.0}, max {times[^1]:0.0}) over {runs} runs; peak RSS {result.peak_rss_mb:0} MB");
        if (Runtime.ConvolutionKernels.Summary() is string tuned) Console.WriteLine(tuned);
        if (loadResult is not null)
            Console.WriteLine($"load: {loadResult.WeightsMb:0} MB of weights in {loadResult.Seconds:0.0} s; peak memory during the load " +
                $"{loadResult.PeakOverWeights:0.00}x the weights' size");
        if (json is not null)
        {
            AtomicFile.WriteAllText(json, JsonSerializer.Serialize(result, new JsonSerializerOptions { WriteIndented = true }));
            Console.WriteLine($"wrote {json}");
        }
        return 0;
    }

    private sealed record LoadResult(double Seconds, double WeightsMb, double PeakOverWeights);

    /// <summary>Saves a model's weights, then measures loading them into a fresh model: the peak resident memory
    /// added by the load (model allocation plus streaming, VmHWM reset first) over the weights' size.</summary>
    private static LoadResult MeasureLoad(string configName, PipelineLoadOptions options)
    {
        string dir = Path.Combine(Path.GetTempPath(), $"diffcache-load-{Environment.ProcessId}");
        try
        {
            using (var source = CreateModel(configName))
            {
                Directory.CreateDirectory(dir);
                Pipelines.LatentPipelineFolder.WriteComponent(dir, "unet", ConfigJson(source), source);
            }
            GC.Collect();
            GC.WaitForPendingFinalizers();
            ProcessMemory.ReleaseFreedMemory();   // else the load reuses the source model's freed pages and looks free
            string unetDir = Path.Combine(dir, "unet");
            double weightsMb = new FileInfo(Path.Combine(unetDir, "diffusion_pytorch_model.safetensors")).Length / 1048576.0;
            if (!ProcessMemory.ResetPeak()) throw new DiffusionCacheException("peak memory cannot be reset on this system (/proc/self/clear_refs)");
            double before = ProcessMemory.CurrentRssMb();
            var clock = Stopwatch.StartNew();
            using var loaded = UNetLoader.Load(unetDir, dtype: options.Dtype, device: options.Device);
            clock.Stop();
            return new LoadResult(clock.Elapsed.TotalSeconds, weightsMb, (ProcessMemory.PeakRssMb() - before) / weightsMb);
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
        }
    }

    private static string ConfigJson(DiffusionUNet model) => model switch
    {
        UNet2DConditionModel m => m.Config.ToJson(),
        _ => throw new DiffusionCacheException($"--load supports UNet2DConditionModel configs, not {model.ClassName}"),
    };

    /// <summary>The U-Net configs benchmarks can build with random weights, by the name the options take.</summary>
    internal static IReadOnlyDictionary<string, (string Name, UNet2DConditionConfig Config)> NamedConfigs { get; } =
        new Dictionary<string, (string, UNet2DConditionConfig)>(StringComparer.Ordinal)
        {
            ["sd15"] = ("SD-1.5", UNet2DConditionConfig.StableDiffusion15),
            ["sd21"] = ("SD-2.1", UNet2DConditionConfig.StableDiffusion21),
            ["sdxl"] = ("SDXL base", UNet2DConditionConfig.StableDiffusionXL),
        };

    internal static DiffusionUNet CreateModel(string name) => name switch
    {
        _ when NamedConfigs.TryGetValue(name, out var named) => new UNet2DConditionModel(named.Config),
        _ when Directory.Exists(name) => UNetLoader.Create(name),
        _ when File.Exists(name) => UNetLoader.Create(Path.GetDirectoryName(Path.GetFullPath(name))!),
        _ => throw new DiffusionCacheException($"--unet-config '{name}': expected sd15, sd21, sdxl, or an existing config.json or model folder"),
    };

    /// <summary>Random N(0,1) sample and context (class labels, SDXL's pooled embeddings and time ids as zeros), in
    /// the model's compute type on its device; the random values are drawn in float32 on the CPU (the same whatever
    /// the runtime options).</summary>
    internal static UNetInput Inputs(DiffusionUNet model, int batch, int side)
    {
        var zero = model.ZeroInput(batch, side, side);
        var weight = model.parameters().First();
        return zero with
        {
            Sample = randn(batch, model.InChannels, side, side).to(weight.dtype, weight.device),
            Context = model.ContextDim is int d ? randn(batch, 77, d).to(weight.dtype, weight.device) : null,
        };
    }
}
