using DiffusionCache.Caching;
using DiffusionCache.Caching.BlockCaching;
using DiffusionCache.Evaluation;
using DiffusionCache.Models.Config;
using DiffusionCache.Models.Loading;
using DiffusionCache.Models.UNets;
using DiffusionCache.Pipelines;
using DiffusionCache.Schedulers;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Cli.Commands;

/// <summary>What <c>bench-cache</c> can measure: a class-conditional pipeline folder or a Stable Diffusion folder with
/// a prompt file (decoded images are compared), or a bare U-Net (a folder, or SD-1.5/2.1 with random weights; latents are compared) with seeded random
/// contexts. Models load in the compute type and on the device of the runtime options; every output comes back as
/// float32 on the CPU (which also waits for the device, so timings are complete), where the fidelity metrics run as
/// they do without a GPU.</summary>
internal static class BenchTargets
{
    public abstract class Target : IBenchTarget, IDisposable
    {
        public abstract DiffusionUNet UNet { get; }
        public abstract string Description { get; }
        public abstract int LatentSide { get; }
        public abstract int ContextLength { get; }
        public abstract SchedulerConfig SchedulerConfig { get; }
        public abstract int ImagesPerRun { get; }
        public IScheduler CreateScheduler() => SchedulerFactory.Create(SchedulerConfig);
        public abstract double Range(Tensor reference);
        public abstract Tensor Run(int steps, ICachePolicy? policy);
        public abstract IProfileInputs ProfileInputs(int conditions, int seeds);
        /// <summary>How many distinct conditions the target can profile over.</summary>
        public virtual int MaxProfileConditions => int.MaxValue;
        public virtual string? ShippedProfile(string solver, int steps) => null;
        /// <summary>The model's own schedule and scale-shift adjustment for the solver and step count, when it ships both.</summary>
        public virtual (string Schedule, string Adjustment)? ShippedScaleShift(string solver, int steps) => null;
        public abstract void Dispose();

        /// <summary>A run's output as float32 on the CPU, for the metrics; the device's copy is disposed.</summary>
        protected static Tensor ToHost(Tensor output)
        {
            if (output.device_type == DeviceType.CPU && output.dtype == ScalarType.Float32) return output;
            using (output) return output.to(ScalarType.Float32, CPU);
        }
    }

    public static Target Open(string model, string solver, double guidance, int batch, int? latent, PipelineLoadOptions load,
        IReadOnlyList<string>? prompts = null, string? configFolder = null) => model switch
    {
        _ when configFolder is not null && !File.Exists(model) =>
            throw new DiffusionCacheException($"--config describes a single-file checkpoint; {model} is not a file"),
        _ when TextToImagePipeline.IsTextToImageModel(model) => new TextToImageTarget(
            prompts is null ? throw new DiffusionCacheException($"{model} is a text-to-image model: give --prompts FILE (one prompt per line)")
                : TextToImagePipeline.Load(model, configFolder, load), solver, guidance, batch, latent, prompts),
        _ when prompts is not null => throw new DiffusionCacheException($"--prompts needs a Stable Diffusion folder or single-file checkpoint; {model} is neither"),
        _ when BenchCommand.NamedConfigs.TryGetValue(model, out var named) =>
            new UNetTarget(RuntimeOptions.Place(new UNet2DConditionModel(named.Config), load), $"{named.Name} U-Net (random weights)", solver, guidance, batch, latent ?? 32),
        _ when File.Exists(Path.Combine(model, "model_index.json")) => new PipelineTarget(ClassConditionalPipeline.Load(model, load), solver, guidance, batch),
        _ when File.Exists(Path.Combine(model, "config.json")) => OpenUNet(model, solver, guidance, batch, latent, load),
        _ => throw new DiffusionCacheException($"--model '{model}': expected sd15, sd21, sdxl, a pipeline folder, a single-file checkpoint (.safetensors) or a U-Net folder"),
    };

    private static Target OpenUNet(string dir, string solver, double guidance, int batch, int? latent, PipelineLoadOptions load)
    {
        var unet = UNetLoader.Load(dir, dtype: load.Dtype, device: load.Device);
        return new UNetTarget(unet, Path.GetFileName(Path.GetFullPath(dir)), solver, guidance, batch, latent ?? unet.SampleSize);
    }

    private sealed class PipelineTarget(ClassConditionalPipeline pipeline, string solver, double guidance, int batch) : Target
    {
        private readonly SchedulerConfig _scheduler = Solvers.For(solver, pipeline.SchedulerConfig);
        private readonly string _solver = solver;

        public override DiffusionUNet UNet => pipeline.UNet;
        public override string Description => Path.GetFileName(Path.GetFullPath(pipeline.Folder));
        public override int LatentSide => pipeline.LatentSide;
        public override int ContextLength => pipeline.LabelEncoder.Config.TokensPerLabel;
        public override SchedulerConfig SchedulerConfig => _scheduler;
        public override int ImagesPerRun => batch;
        public override double Range(Tensor reference) => 2.0;

        public override Tensor Run(int steps, ICachePolicy? policy)
        {
            var labels = Enumerable.Range(0, batch).Select(i => (long)(i % pipeline.NumLabels)).ToArray();
            using var scheduler = CreateScheduler();
            return ToHost(pipeline.Generate(scheduler, labels, seed: 0, steps, guidance, policy));
        }

        public override IProfileInputs ProfileInputs(int conditions, int seeds) =>
            new ClassLabelProfileInputs(pipeline.LabelEncoder, pipeline.UNet, conditions, seeds, guidance);

        public override string? ShippedProfile(string solverName, int steps)
        {
            string path = Path.Combine(pipeline.Folder, "cache", $"profile-{solverName}-{steps}.json");
            return File.Exists(path) && solverName == _solver ? path : null;
        }

        public override (string Schedule, string Adjustment)? ShippedScaleShift(string solverName, int steps)
        {
            string schedule = CacheChoice.ShippedSchedule(pipeline, solverName, steps);
            string adjustment = CacheChoice.ShippedAdjustment(pipeline, solverName, steps);
            return File.Exists(schedule) && File.Exists(adjustment) && solverName == _solver ? (schedule, adjustment) : null;
        }

        public override void Dispose() => pipeline.Dispose();
    }

    /// <summary>A Stable Diffusion folder: batch row i is prompt i (cycling through the file) with the empty negative
    /// prompt; decoded images are compared.</summary>
    private sealed class TextToImageTarget(TextToImagePipeline pipeline, string solver, double guidance, int batch, int? latent,
        IReadOnlyList<string> prompts) : Target
    {
        private readonly SchedulerConfig _scheduler = Solvers.For(solver, pipeline.SchedulerConfig);
        private readonly int _side = latent ?? pipeline.UNet.SampleSize;

        public override DiffusionUNet UNet => pipeline.UNet;
        public override string Description => $"{Path.GetFileName(Path.GetFullPath(pipeline.Folder))} ({prompts.Count} prompts)";
        public override int LatentSide => _side;
        public override int ContextLength => 77;
        public override SchedulerConfig SchedulerConfig => _scheduler;
        public override int ImagesPerRun => batch;
        public override double Range(Tensor reference) => 2.0;

        public override Tensor Run(int steps, ICachePolicy? policy)
        {
            using var scheduler = CreateScheduler();
            var call = new TextToImage
            {
                Prompts = Enumerable.Range(0, batch).Select(i => prompts[i % prompts.Count]).ToArray(),
                Steps = steps, GuidanceScale = guidance, Seed = 0,
                Height = _side * pipeline.VaeScaleFactor, Width = _side * pipeline.VaeScaleFactor,
            };
            return ToHost(pipeline.Generate(scheduler, call, policy));
        }

        public override int MaxProfileConditions => prompts.Count;

        public override IProfileInputs ProfileInputs(int conditions, int seeds) => conditions <= prompts.Count
            ? new PromptProfileInputs(pipeline, prompts.Take(conditions).ToArray(), seeds, guidance, _side, _side)
            : throw new DiffusionCacheException($"the profile needs {conditions} prompts, the prompt file has {prompts.Count}");

        public override void Dispose() => pipeline.Dispose();
    }

    private sealed class UNetTarget : Target
    {
        private readonly DiffusionUNet _unet;
        private readonly string _description;
        private readonly SchedulerConfig _scheduler;
        private readonly double _guidance;
        private readonly int _batch, _side;
        private readonly Tensor? _context, _uncond, _labels, _textEmbeds, _uncondTextEmbeds, _timeIds;

        public UNetTarget(DiffusionUNet unet, string description, string solver, double guidance, int batch, int side)
        {
            _unet = unet;
            _description = description;
            _scheduler = Solvers.For(solver, SchedulerConfig.FromJson(TrainCommand.SchedulerJson));
            _guidance = guidance;
            _batch = batch;
            _side = side;
            // Drawn in float32 by a CPU generator (the same values whatever the runtime options), then placed in the
            // model's compute type on its device; size ids stay float32, as the sampler feeds them.
            using var g = new Generator(1234);
            var weight = unet.parameters().First();
            var (dtype, device) = (weight.dtype, weight.device);
            Tensor Random(long[] shape)
            {
                using var scope = NewDisposeScope();
                return randn(shape, ScalarType.Float32, generator: g).to(dtype, device).MoveToOuterDisposeScope();
            }
            if (unet.ContextDim is int d)
            {
                _context = Random([batch, 77, d]);
                _uncond = Random([batch, 77, d]);
            }
            if (unet.NumClassEmbeds is int n) _labels = tensor(Enumerable.Range(0, batch).Select(i => (long)(i % n)).ToArray(), device: device).DetachFromDisposeScope();
            if (unet is UNet2DConditionModel { PooledTextDim: int pooled })
            {
                // SDXL: random pooled embeddings, and the size ids of an image of the latent's size, uncropped.
                _textEmbeds = Random([batch, pooled]);
                _uncondTextEmbeds = Random([batch, pooled]);
                float px = side * 8f;
                _timeIds = tensor(new[] { px, px, 0f, 0f, px, px }, device: device).unsqueeze(0).repeat(batch, 1).DetachFromDisposeScope();
            }
        }

        public override DiffusionUNet UNet => _unet;
        public override string Description => _description;
        public override int LatentSide => _side;
        public override int ContextLength => 77;
        public override SchedulerConfig SchedulerConfig => _scheduler;
        public override int ImagesPerRun => _batch;

        public override double Range(Tensor reference) => (reference.max() - reference.min()).item<float>();

        public override Tensor Run(int steps, ICachePolicy? policy)
        {
            using var scheduler = CreateScheduler();
            var request = new SamplingRequest
            {
                Steps = steps, Batch = _batch, Height = _side, Width = _side, Context = _context,
                UnconditionalContext = _context is null || _guidance == 1.0 ? null : _uncond,
                ClassLabels = _labels, GuidanceScale = _guidance, Seed = 0,
                TextEmbeds = _textEmbeds, UnconditionalTextEmbeds = _uncondTextEmbeds, TimeIds = _timeIds, UnconditionalTimeIds = _timeIds,
            };
            return ToHost(CachedSampling.Sample(_unet, scheduler, request, policy));
        }

        public override IProfileInputs ProfileInputs(int conditions, int seeds) =>
            new RandomContextProfileInputs(_unet, conditions, seeds, _guidance, resolution: _side);

        public override void Dispose()
        {
            foreach (var t in new[] { _context, _uncond, _labels, _textEmbeds, _uncondTextEmbeds, _timeIds }) t?.Dispose();
            _unet.Dispose();
        }
    }
}
