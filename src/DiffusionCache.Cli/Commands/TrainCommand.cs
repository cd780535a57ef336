using System.CommandLine;
using System.Diagnostics;
using DiffusionCache.Cli.Reporting;
using DiffusionCache.Data;
using DiffusionCache.Evaluation;
using DiffusionCache.Formats.Safetensors;
using DiffusionCache.Models.Autoencoders;
using DiffusionCache.Models.Conditioning;
using DiffusionCache.Models.Config;
using DiffusionCache.Models.Loading;
using DiffusionCache.Models.UNets;
using DiffusionCache.Pipelines;
using DiffusionCache.Schedulers;
using DiffusionCache.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Cli.Commands;

/// <summary><c>diffcache train vae|unet|classifier</c>: trains the embedded model's components on Fashion-MNIST, in
/// float32 on <c>--device</c>. Runs resume from their last checkpoint; the finished component is written into the
/// pipeline folder.</summary>
internal static class TrainCommand
{
    public const string DefaultModel = "models/fashion-ldm";
    public const string DefaultCheckpoints = "checkpoints/fashion";

    /// <summary>Stable Diffusion's DDIM configuration: the noise schedule the U-Net is trained with.</summary>
    public const string SchedulerJson = """
        {
          "_class_name": "DDIMScheduler",
          "_diffusers_version": "0.27.2",
          "beta_end": 0.012,
          "beta_schedule": "scaled_linear",
          "beta_start": 0.00085,
          "clip_sample": false,
          "num_train_timesteps": 1000,
          "prediction_type": "epsilon",
          "set_alpha_to_one": false,
          "steps_offset": 1,
          "timestep_spacing": "leading"
        }
        """;

    public static Command Create()
    {
        var command = new Command("train", "train the embedded model's components on Fashion-MNIST (resumable)");
        command.Subcommands.Add(Component("vae", "train the autoencoder (32x32x1 -> 8x8x4)", 3000, 64, 1e-3, TrainVae));
        command.Subcommands.Add(Component("classifier", "train the metric network (FID features, class accuracy)", 2400, 128, 2e-3, TrainClassifier));
        command.Subcommands.Add(Component("classifier-b", "train the second metric network (pre-activation ResNet with BatchNorm; the second feature space of FID/KID)",
            1200, 64, 2e-3, TrainClassifierB, seed: 1));
        command.Subcommands.Add(Component("unet", "train the class-conditional latent U-Net and label encoder", 6000, 128, 2e-4, TrainUNet));
        command.Subcommands.Add(TrainScaleShiftCommand.Create());
        return command;
    }

    private sealed record Args(long Steps, int Batch, double LearningRate, string Model, string Checkpoints, long Seed, PipelineLoadOptions Load);

    /// <summary>Why <c>--dtype</c> is fp32 only here.</summary>
    internal const string Float32Training = "training keeps float32 weights, gradients and optimizer state; there is no mixed-precision training";

    private static Command Component(string name, string description, long steps, int batch, double lr, Func<Args, CancellationToken, int> run,
        long seed = 0)
    {
        var stepsOption = new Option<long>("--steps") { Description = "total optimizer steps", DefaultValueFactory = _ => steps };
        var batchOption = new Option<int>("--batch") { Description = "batch size", DefaultValueFactory = _ => batch };
        var lrOption = new Option<double>("--lr") { Description = "peak learning rate (AdamW)", DefaultValueFactory = _ => lr };
        var model = new Option<string>("--model") { Description = "pipeline folder to write", DefaultValueFactory = _ => DefaultModel };
        var checkpoints = new Option<string>("--checkpoints") { Description = "checkpoint folder (resumes from it)", DefaultValueFactory = _ => DefaultCheckpoints };
        var seedOption = new Option<long>("--seed") { Description = "seed of data order, noise and init", DefaultValueFactory = _ => seed };
        var command = new Command(name, description) { stepsOption, batchOption, lrOption, model, checkpoints, seedOption };
        var runtime = new RuntimeOptions(float32Only: Float32Training);
        runtime.AddTo(command);
        command.SetAction((parse, cancel) => Task.FromResult(CommandRunner.Run(() =>
        {
            var load = runtime.Apply(parse);
            var a = new Args(parse.GetValue(stepsOption), parse.GetValue(batchOption), parse.GetValue(lrOption),
                parse.GetValue(model)!, parse.GetValue(checkpoints)!, parse.GetValue(seedOption), load);
            return run(a, cancel);
        })));
        return command;
    }

    private static int TrainVae(Args a, CancellationToken cancel)
    {
        FashionMnist.EnsureInstalled();
        using var train = FashionMnist.Load(FashionMnistSplit.Train);
        string checkpoints = Path.Combine(a.Checkpoints, "vae");
        manual_seed(a.Seed);
        using var vae = Place(new AutoencoderKL(AutoencoderTraining.FashionConfig), a);
        var options = new TrainingOptions
        {
            CheckpointDir = checkpoints, TotalSteps = a.Steps, BatchSize = a.Batch, LearningRate = a.LearningRate,
            Seed = a.Seed, EmaDecay = 0.999, CheckpointEvery = 250, WarmupSteps = 100,
        };
        var clock = Stopwatch.StartNew();
        using var ema = ProgressView.Run("vae", a.Steps, p =>
            AutoencoderTraining.Train(vae, train.Images, options, klWeight: 1e-6, ProgressView.ForTraining(p), cancel));
        ema.CopyTo(vae);
        vae.eval();

        using var latents = AutoencoderTraining.EncodeMeans(vae, train.Images);
        double scaling = AutoencoderTraining.ScalingFactorFor(latents);
        using var test = FashionMnist.Load(FashionMnistSplit.Test);
        double psnr = AutoencoderTraining.ReconstructionPsnr(vae, test.Images);
        var config = vae.Config with { ScalingFactor = scaling };
        Directory.CreateDirectory(a.Model);
        LatentPipelineFolder.WriteComponent(a.Model, "vae", config.ToJson(), vae);
        LossCurve.Write(Path.Combine(checkpoints, "log.csv"), Path.Combine(checkpoints, "loss.png"), "autoencoder training loss");
        Console.WriteLine($"vae: {a.Steps} steps, test PSNR {psnr:0.00} dB, latent scaling factor {scaling:0.0000}; " +
            $"wrote {Path.Combine(a.Model, "vae")} ({clock.Elapsed:hh\\:mm\\:ss} this run)");
        return 0;
    }

    private static int TrainClassifier(Args a, CancellationToken cancel) =>
        TrainMetric(a, "classifier", () => new FashionClassifier(), ClassifierFolder.DefaultPath, cancel);

    private static int TrainClassifierB(Args a, CancellationToken cancel) =>
        TrainMetric(a, "classifier-b", () => new FashionResNet(), ClassifierFolder.SecondDefaultPath, cancel);

    /// <summary>Trains a metric network (seeded before <paramref name="create"/> builds it, so its init follows
    /// --seed) with the shared loop, copies the EMA in, recalibrates BatchNorm statistics (if any) on the first 5000
    /// training images, and writes it to --model (default: <paramref name="defaultOutput"/>).</summary>
    private static int TrainMetric(Args a, string name, Func<MetricNetwork> create, string defaultOutput, CancellationToken cancel)
    {
        FashionMnist.EnsureInstalled();
        using var train = FashionMnist.Load(FashionMnistSplit.Train);
        using var test = FashionMnist.Load(FashionMnistSplit.Test);
        string checkpoints = Path.Combine(a.Checkpoints, name);
        manual_seed(a.Seed);
        using var model = Place(create(), a);
        var options = new TrainingOptions
        {
            CheckpointDir = checkpoints, TotalSteps = a.Steps, BatchSize = a.Batch, LearningRate = a.LearningRate,
            Seed = a.Seed, EmaDecay = 0.998, CheckpointEvery = 300, WarmupSteps = 100, WeightDecay = 1e-4,
        };
        var clock = Stopwatch.StartNew();
        using var ema = ProgressView.Run(name, a.Steps, p =>
            ClassifierTraining.Train(model, train.Images, train.Labels, options, ProgressView.ForTraining(p), cancel));
        ema.CopyTo(model);
        using (var calibration = train.Images.narrow(0, 0, 5000))
            ClassifierTraining.RecalibrateBatchNorm(model, calibration);
        double accuracy = ClassifierTraining.Accuracy(model, test.Images, test.Labels);
        string output = a.Model == DefaultModel ? defaultOutput : a.Model;
        ClassifierFolder.Save(output, model);
        LossCurve.Write(Path.Combine(checkpoints, "log.csv"), Path.Combine(checkpoints, "loss.png"), $"{name} training loss");
        Console.WriteLine($"{name}: {a.Steps} steps, test accuracy {accuracy:P2}; wrote {output} ({clock.Elapsed:hh\\:mm\\:ss} this run)");
        return 0;
    }

    private static int TrainUNet(Args a, CancellationToken cancel)
    {
        string vaeDir = Path.Combine(a.Model, "vae");
        if (!Directory.Exists(vaeDir)) throw new DiffusionCacheException($"{vaeDir} not found: run 'diffcache train vae' first");
        FashionMnist.EnsureInstalled();
        string checkpoints = Path.Combine(a.Checkpoints, "unet");
        Directory.CreateDirectory(checkpoints);
        var (latents, labels) = TrainingLatents(vaeDir, Path.Combine(checkpoints, "latents.safetensors"), a.Load.Device);
        using var _ = latents;
        using var __ = labels;

        manual_seed(a.Seed);
        using var model = Place(new ConditionedUNet(new UNet2DConditionModel(LatentDiffusionTraining.FashionConfig),
            new LabelEncoder(LatentDiffusionTraining.FashionLabels)), a);
        var schedulerConfig = SchedulerConfig.FromJson(SchedulerJson);
        using var scheduler = SchedulerFactory.Create(schedulerConfig);
        var options = new TrainingOptions
        {
            CheckpointDir = checkpoints, TotalSteps = a.Steps, BatchSize = a.Batch, LearningRate = a.LearningRate,
            Seed = a.Seed, EmaDecay = 0.9995, CheckpointEvery = 500, WarmupSteps = 500,
        };
        var clock = Stopwatch.StartNew();
        using var ema = ProgressView.Run("unet", a.Steps, p => LatentDiffusionTraining.Train(model, latents, labels,
            scheduler.AlphasCumprod, options, labelDropout: 0.1, ProgressView.ForTraining(p), cancel));
        ema.CopyTo(model);

        LatentPipelineFolder.WriteComponent(a.Model, "unet", model.UNet.Config.ToJson(), model.UNet);
        LatentPipelineFolder.WriteComponent(a.Model, "label_encoder", model.LabelEncoder.Config.ToJson(), model.LabelEncoder);
        LatentPipelineFolder.WriteScheduler(a.Model, SchedulerJson);
        LatentPipelineFolder.WriteIndex(a.Model, "DDIMScheduler");
        LossCurve.Write(Path.Combine(checkpoints, "log.csv"), Path.Combine(checkpoints, "loss.png"), "denoiser training loss");
        Console.WriteLine($"unet: {a.Steps} steps; wrote {a.Model} ({clock.Elapsed:hh\\:mm\\:ss} this run)");
        return 0;
    }

    /// <summary>The model, initialised on the CPU (the same weights for a seed on any device), moved to the
    /// training device (training is float32: the options allow no other type).</summary>
    private static T Place<T>(T model, Args a) where T : nn.Module => RuntimeOptions.Place(model, a.Load);

    /// <summary>The training set encoded once by the finished autoencoder (posterior means, scaled), cached beside
    /// the checkpoints so that a resumed run trains on exactly the same latents; on the CPU, where the training
    /// job's generator draws batches.</summary>
    private static (Tensor Latents, Tensor Labels) TrainingLatents(string vaeDir, string cache, Device? device)
    {
        if (File.Exists(cache))
        {
            using var file = SafetensorsFile.Open(cache);
            return (file.Load("latents"), file.Load("labels"));
        }
        using var vae = AutoencoderLoader.Load(vaeDir, device: device);
        using var train = FashionMnist.Load(FashionMnistSplit.Train);
        using var means = AutoencoderTraining.EncodeMeans(vae, train.Images);
        var latents = (means * vae.ScalingFactor).cpu();
        var labels = train.Labels.clone();
        SafetensorsWriter.Write(cache, [KeyValuePair.Create("latents", latents), KeyValuePair.Create("labels", labels)]);
        return (latents, labels);
    }
}
