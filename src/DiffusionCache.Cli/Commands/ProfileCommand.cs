using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using DiffusionCache.Caching.BlockCaching;
using DiffusionCache.Cli.Reporting;
using DiffusionCache.Formats.Json;
using DiffusionCache.Models.Loading;
using DiffusionCache.Models.UNets;
using DiffusionCache.Pipelines;
using DiffusionCache.Schedulers;
using DiffusionCache.Sharding;
using Spectre.Console;

namespace DiffusionCache.Cli.Commands;

/// <summary>
/// <c>diffcache profile</c>: the per-block change profile of a model (Block Caching Sec. 3.2, eq. 6, Fig. 2b) over P
/// conditions x S seeds of uncached sampling; writes <c>profile.json</c>, <c>profile.csv</c> and <c>profile.png</c>.
/// Conditions: the tensors of <c>--inputs</c> (x_T.{s}, cond.{p}, uncond) when given; otherwise labels 0..P-1 for a
/// class-conditional pipeline folder (its label encoder; the null label is unconditional), or random N(0,1)
/// contexts (condition p from seed p+1, unconditional from seed 0) for a bare U-Net folder, or the first P prompts of
/// <c>--prompts</c> through the text encoder (the empty prompt unconditional) for a Stable Diffusion folder.
/// </summary>
internal static class ProfileCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "U-Net folder (config.json + weights), pipeline folder (model_index.json) or Stable Diffusion/SDXL single-file checkpoint (.safetensors)", Required = true };
        var schedulerConfig = new Option<string?>("--scheduler-config") { Description = "scheduler_config.json (default: the model folder's)" };
        var config = new Option<string?>("--config") { Description = "single-file checkpoints: a diffusers folder of the model's family to take configs, scheduler and tokenizers from (default: the family's, e.g. SDXL 1.0 base)" };
        var steps = new Option<int>("--steps") { Description = "denoising steps N", Required = true };
        var conditions = new Option<int>("--conditions") { Description = "number of conditions P", Required = true };
        var seeds = new Option<int>("--seeds") { Description = "number of noise seeds S per condition", Required = true };
        var guidance = new Option<double>("--guidance") { Description = "classifier-free guidance scale", DefaultValueFactory = _ => 4.0 };
        // Checked by BlockCachingTargets.Parse in Execute (a comma list such as transformer2d,resnet2d is one value).
        var targets = new Option<string>("--targets")
        {
            Description = "blocks to profile: transformer2d, resnet2d, or both kinds together: transformer2d,resnet2d",
            DefaultValueFactory = _ => "transformer2d",
        };
        var inputs = new Option<string?>("--inputs") { Description = "safetensors with x_T.{s}, cond.{p} and uncond (e.g. a golden profile case) instead of generated conditions" };
        var resolution = new Option<int?>("--resolution") { Description = "latent side for generated conditions (default: the model's sample_size)" };
        var contextLength = new Option<int>("--context-length") { Description = "tokens of the random contexts of a bare U-Net", DefaultValueFactory = _ => 77 };
        var prompts = new Option<string?>("--prompts") { Description = "text-to-image folders: a prompt file (one per line); the first P prompts are the conditions" };
        var output = new Option<string>("--out") { Description = "output folder", Required = true };
        var shard = ShardOption.Create();
        var command = new Command("profile", "measure how much each block's change moves between steps (Block Caching eq. 6)")
        {
            model, schedulerConfig, config, steps, conditions, seeds, guidance, targets, inputs, resolution, contextLength, prompts, output, shard,
        };
        var runtime = new RuntimeOptions();
        runtime.AddTo(command);
        command.SetAction((parse, cancel) => Task.FromResult(CommandRunner.Run(() => Execute(new Args(
            parse.GetValue(model)!, parse.GetValue(schedulerConfig), parse.GetValue(steps), parse.GetValue(conditions),
            parse.GetValue(seeds), parse.GetValue(guidance), parse.GetValue(targets)!, parse.GetValue(inputs),
            parse.GetValue(resolution), parse.GetValue(contextLength), parse.GetValue(prompts), parse.GetValue(output)!, runtime.Apply(parse),
            ShardOption.Parse(parse.GetValue(shard))) { ConfigDir = parse.GetValue(config) }, cancel))));
        return command;
    }

    private sealed record Args(string Model, string? SchedulerConfig, int Steps, int Conditions, int Seeds, double Guidance,
        string Targets, string? Inputs, int? Resolution, int ContextLength, string? Prompts, string Out, PipelineLoadOptions Load,
        Shard? Shard = null)
    {
        public string? ConfigDir { get; init; }
    }

    private static int Execute(Args a, CancellationToken cancel)
    {
        if (a.Steps < 1) throw new DiffusionCacheException("--steps must be at least 1");
        if (a.Conditions < 1 || a.Seeds < 1) throw new DiffusionCacheException("--conditions and --seeds must be at least 1");
        if (!double.IsFinite(a.Guidance) || a.Guidance < 0) throw new DiffusionCacheException("--guidance must be a finite number >= 0");
        var targets = BlockCachingTargets.Parse(a.Targets);
        string modelDir = Path.GetFullPath(a.Model);
        bool singleFile = File.Exists(modelDir);
        if (a.ConfigDir is not null && !singleFile)
            throw new DiffusionCacheException($"--config describes a single-file checkpoint; {modelDir} is not a file");
        bool pipeline = File.Exists(Path.Combine(modelDir, "model_index.json"));
        string unetDir = pipeline ? Path.Combine(modelDir, "unet") : modelDir;
        // A single-file checkpoint brings its scheduler with its family's configs (SingleFileConfigs.Defaults).
        string? schedulerPath = a.SchedulerConfig ?? (singleFile ? null : pipeline
            ? Path.Combine(modelDir, "scheduler", "scheduler_config.json")
            : Path.Combine(modelDir, "scheduler_config.json"));
        if (schedulerPath is not null && !File.Exists(schedulerPath))
            throw new DiffusionCacheException($"{schedulerPath}: scheduler config not found (pass --scheduler-config)");
        using var schedulerJson = schedulerPath is null ? null : PythonJson.Parse(File.ReadAllBytes(schedulerPath));

        // A text-to-image model profiles over prompts, so it needs its text encoder: the whole pipeline loads.
        using var textToImage = TextToImagePipeline.IsTextToImageModel(modelDir) ? TextToImagePipeline.Load(modelDir, a.ConfigDir, a.Load) : null;
        var scheduler = schedulerPath is null ? textToImage!.SchedulerConfig : SchedulerConfig.FromFile(schedulerPath);
        if (textToImage is null && a.Prompts is not null) throw new DiffusionCacheException($"--prompts needs a Stable Diffusion folder or single-file checkpoint; {modelDir} is neither");
        using var ownUNet = textToImage is null ? UNetLoader.Load(unetDir, dtype: a.Load.Dtype, device: a.Load.Device) : null;
        var unet = textToImage?.UNet ?? ownUNet!;
        targets.Sites(unet);   // a model without such blocks is refused before any work
        using var profileInputs = textToImage is null ? Inputs(a, unet, modelDir, pipeline) : PromptInputs(a, textToImage);
        var settings = new ProfileSettings
        {
            ModelId = Path.GetFileName(modelDir.TrimEnd(Path.DirectorySeparatorChar)),
            ModelPath = modelDir,
            Scheduler = scheduler,
            SchedulerJson = schedulerJson?.RootElement.Clone(),
            Steps = a.Steps,
            Targets = targets,
        };
        var inputs = (IProfileInputs)profileInputs;
        if (a.Shard is Shard shard) return RunShard(unet, settings, inputs, shard, a.Out, cancel);
        long total = (long)inputs.NumConditions * inputs.NumSeeds * a.Steps;
        var profile = ProgressView.Run("profile", total, progress => ProfileRunner.Run(unet, settings, inputs,
            new Reporter(p => progress.Report((p.Done, $"generation {p.Generation + 1}/{p.Generations} (condition {p.Condition}, seed {p.Seed})"))),
            cancel));

        Directory.CreateDirectory(a.Out);
        string json = Path.Combine(a.Out, "profile.json"), csv = Path.Combine(a.Out, "profile.csv"), png = Path.Combine(a.Out, "profile.png");
        profile.Save(json);
        profile.SaveCsv(csv);
        ProfilePlot.Write(profile, png);

        var (dtypeName, deviceName) = RuntimeOptions.Describe(a.Load);
        Console.WriteLine($"profile: {profile.Model}, {profile.Solver} {profile.NumInferenceSteps} steps, " +
            $"{profile.NumConditions} conditions x {profile.NumSeeds} seeds, {profile.Blocks.Count} {profile.Targets} blocks ({dtypeName} on {deviceName})");
        Console.WriteLine($"conditions: {profile.Conditions}");
        var table = new Table().Border(TableBorder.Simple).AddColumn("block")
            .AddColumn(new TableColumn("mean L1_rel (k>=1)").RightAligned()).AddColumn(new TableColumn("max").RightAligned())
            .AddColumn(new TableColumn("argmax k").RightAligned());
        for (int i = 0; i < profile.Blocks.Count; i++)
        {
            var row = profile.Mean[i].Skip(1).ToArray();
            if (row.Length == 0) row = [0.0];
            int argmax = Array.IndexOf(row, row.Max()) + 1;
            table.AddRow(profile.Blocks[i], F(row.Average()), F(row.Max()), argmax.ToString(CultureInfo.InvariantCulture));
        }
        AnsiConsole.Write(table);
        Console.WriteLine($"wrote {json}, {csv}, {png}");
        return 0;
    }

    private static int RunShard(DiffusionUNet unet, ProfileSettings settings, IProfileInputs inputs, Shard shard, string output,
        CancellationToken cancel)
    {
        if (ShardFiles.IsDone(output, ProfileShard.Kind, shard, ProfileRunner.Descriptor(settings, inputs, shard.Count)))
        {
            ShardOption.SkipMessage(ProfileShard.PathIn(output, shard));
            return 0;
        }
        var (start, end) = shard.Range(inputs.NumConditions * inputs.NumSeeds);
        var partial = ProgressView.Run($"profile shard {shard}", (long)Math.Max(0, end - start) * settings.Steps, progress => ProfileRunner.RunShard(
            unet, settings, inputs, shard, new Reporter(p => progress.Report(((long)(p.Generation - start) * p.Steps + p.Step,
                $"generation {p.Generation + 1}/{p.Generations}"))), cancel));
        Console.WriteLine($"{partial}; wrote {partial.Save(output)}");
        return 0;
    }

    private static IDisposable Inputs(Args a, DiffusionUNet unet, string modelDir, bool pipeline)
    {
        if (a.Inputs is not null)
        {
            if (a.Resolution is not null) throw new DiffusionCacheException("--resolution does not apply with --inputs (x_T sets the size)");
            return new TensorFileProfileInputs(a.Inputs, a.Conditions, a.Seeds, a.Guidance);
        }
        if (pipeline && HasLabelEncoder(modelDir))
        {
            using var encoder = LatentPipelineFolder.LoadLabelEncoder(modelDir, a.Load.Dtype, a.Load.Device);
            return new ClassLabelProfileInputs(encoder, unet, a.Conditions, a.Seeds, a.Guidance, a.Resolution);
        }
        return new RandomContextProfileInputs(unet, a.Conditions, a.Seeds, a.Guidance, a.ContextLength, a.Resolution);
    }

    private static PromptProfileInputs PromptInputs(Args a, TextToImagePipeline pipeline)
    {
        if (a.Inputs is not null) throw new DiffusionCacheException("--inputs does not apply to a Stable Diffusion folder: give --prompts");
        var texts = PromptFile.Read(a.Prompts ?? throw new DiffusionCacheException($"{a.Model} is a text-to-image model: give --prompts FILE (one prompt per line)"));
        if (texts.Count < a.Conditions) throw new DiffusionCacheException($"{a.Prompts}: {texts.Count} prompts, fewer than --conditions {a.Conditions}");
        int side = a.Resolution ?? pipeline.UNet.SampleSize;
        pipeline.Warning += message => Console.Error.WriteLine($"warning: {message}");
        return new PromptProfileInputs(pipeline, texts.Take(a.Conditions).ToArray(), a.Seeds, a.Guidance, side, side);
    }

    private static bool HasLabelEncoder(string pipelineDir)
    {
        using var index = PythonJson.Parse(File.ReadAllBytes(Path.Combine(pipelineDir, "model_index.json")));
        return index.RootElement.ValueKind == JsonValueKind.Object && index.RootElement.TryGetProperty("label_encoder", out _);
    }

    private static string F(double v) => v.ToString("0.0000", CultureInfo.InvariantCulture);

    private sealed class Reporter(Action<ProfileProgress> report) : IProgress<ProfileProgress>
    {
        public void Report(ProfileProgress value) => report(value);
    }
}
