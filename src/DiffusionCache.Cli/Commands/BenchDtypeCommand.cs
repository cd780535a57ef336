using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using DiffusionCache.Analysis;
using DiffusionCache.Evaluation;
using DiffusionCache.Formats;
using DiffusionCache.Pipelines;
using DiffusionCache.Schedulers;
using static TorchSharp.torch;

namespace DiffusionCache.Cli.Commands;

/// <summary>
/// <c>diffcache bench-dtype</c>: what a lower compute precision costs and buys on this machine. The same model loads
/// once per dtype; the same seeds sample with each, interleaved seed by seed so that a busy machine slows them
/// alike; reports the median time per denoising step and per image, the ratio to the first dtype, and the PSNR of
/// each decoded image to the first dtype's (float32 by default) image of the same seed.
/// </summary>
internal static class BenchDtypeCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "fashion (the embedded model), sd15 / sd21 (random weights, real configs), or a Stable Diffusion folder", DefaultValueFactory = _ => "fashion" };
        var dtypes = new Option<string>("--dtypes") { Description = "comma-separated compute types; the first is the reference", DefaultValueFactory = _ => "fp32,bf16" };
        var steps = new Option<int>("--steps") { Description = "denoising steps", DefaultValueFactory = _ => 10 };
        var seeds = new Option<int>("--seeds") { Description = "seeds (images per dtype; the embedded model samples every class per seed)", DefaultValueFactory = _ => 2 };
        var size = new Option<int?>("--size") { Description = "text-to-image: image side in pixels (default 256)" };
        var tokenizer = new Option<string>("--tokenizer") { Description = "CLIP tokenizer folder for a random-weight folder", DefaultValueFactory = _ => "../shared/golden/textvae/tokenizer" };
        var json = new Option<string?>("--json") { Description = "also write the result as JSON" };
        var command = new Command("bench-dtype", "time per step and PSNR to float32 of the same model in each compute type")
        {
            model, dtypes, steps, seeds, size, tokenizer, json,
        };
        var runtime = new RuntimeOptions();
        runtime.AddThreadsTo(command);   // the types are the subject here, and it runs on the CPU
        command.SetAction((parse, cancel) => Task.FromResult(CommandRunner.Run(() => Execute(parse.GetValue(model)!, parse.GetValue(dtypes)!,
            parse.GetValue(steps), parse.GetValue(seeds), parse.GetValue(size), parse.GetValue(tokenizer)!,
            parse.GetValue(json), () => runtime.ApplyThreads(parse), cancel))));
        return command;
    }

    /// <summary>One loaded copy of the model in one dtype: samples a seed's images, reporting each step's time.</summary>
    private interface ISubject : IDisposable
    {
        Tensor Sample(long seed, IStepObserver timer);
    }

    private static int Execute(string model, string dtypeList, int steps, int seeds, int? size, string tokenizerDir,
        string? json, Action applyThreads, CancellationToken cancel)
    {
        if (steps < 1 || seeds < 1) throw new DiffusionCacheException("--steps and --seeds must be at least 1");
        if (size is < 8) throw new DiffusionCacheException($"--size must be at least 8, got {size}");
        applyThreads();
        var names = dtypeList.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        var types = names.Select(ParseDtype).ToArray();
        if (types.Length < 2 || types.Distinct().Count() != types.Length)
            throw new DiffusionCacheException($"--dtypes '{dtypeList}': expected two or more different types, e.g. fp32,bf16");
        if (model == "fashion" && size is not null) throw new DiffusionCacheException("--size applies to text-to-image models, not the embedded one");
        if (json is not null) AtomicFile.EnsureWritable(json);

        string? temp = null;
        var subjects = new List<ISubject>();
        try
        {
            string folder = model;
            if (model is "sd15" or "sd21")
            {
                temp = Path.Combine(Path.GetTempPath(), $"diffcache-bench-dtype-{model}-{Environment.ProcessId}");
                Console.WriteLine($"writing a random-weight {model} folder to {temp} ...");
                BenchPipelineCommand.WriteRandomFolder(temp, model, DefaultPaths.Resolve(tokenizerDir));
                folder = temp;
            }
            else if (model == "fashion") folder = DefaultPaths.Resolve("models/fashion-ldm");
            else if (!TextToImagePipeline.IsTextToImageFolder(model))
                throw new DiffusionCacheException($"--model '{model}': expected fashion, sd15, sd21 or a Stable Diffusion folder");

            foreach (var dtype in types)
                subjects.Add(model == "fashion" ? new ClassConditional(folder, dtype, steps, cancel) : new TextToImageSubject(folder, dtype, steps, size ?? 256, cancel));
            foreach (var s in subjects) s.Sample(-1, new BenchPipelineCommand.StepTimer()).Dispose();   // warm-up: one-time costs off the clock

            var stepTimes = types.Select(_ => new BenchPipelineCommand.StepTimer()).ToArray();
            var imageSeconds = types.Select(_ => new List<double>()).ToArray();
            var psnr = types.Select(_ => new List<double>()).ToArray();
            var cpu = new CpuShare();
            for (int seed = 0; seed < seeds; seed++)
            {
                Tensor? reference = null;
                // Rotate the order per seed so that neither dtype always runs right after the other.
                var order = Enumerable.Range(0, types.Length).Select(i => (i + seed) % types.Length).ToArray();
                var images = new Tensor[types.Length];
                foreach (int i in order)
                {
                    var clock = Stopwatch.StartNew();
                    images[i] = subjects[i].Sample(seed, stepTimes[i]);
                    imageSeconds[i].Add(clock.Elapsed.TotalSeconds);
                    Console.WriteLine($"  seed {seed} {names[i]}: {clock.Elapsed.TotalSeconds:0.00} s");
                }
                reference = images[0];
                for (int i = 0; i < types.Length; i++) psnr[i].Add(i == 0 ? double.PositiveInfinity : ImageMetrics.Psnr(images[i], reference, 2.0));
                foreach (var image in images) image.Dispose();
            }
            double share = cpu.Share(get_num_threads());

            static double Median(IEnumerable<double> v) { var s = v.Order().ToArray(); return s[s.Length / 2]; }
            var rows = types.Select((dtype, i) => new
            {
                dtype = names[i],
                step_median_seconds = Median(stepTimes[i].Seconds),
                image_median_seconds = Median(imageSeconds[i]),
                slowdown_vs_reference = Median(stepTimes[i].Seconds) / Median(stepTimes[0].Seconds),
                psnr_db_mean = i == 0 ? (double?)null : psnr[i].Average(),
                psnr_db_min = i == 0 ? (double?)null : psnr[i].Min(),
            }).ToArray();
            var result = new
            {
                model,
                steps,
                seeds,
                size = model == "fashion" ? (int?)null : size ?? 256,
                threads = get_num_threads(),
                dnnl_max_cpu_isa = Environment.GetEnvironmentVariable("DNNL_MAX_CPU_ISA"),
                cpu_share = share,
                rows,
            };
            Console.WriteLine($"{model}: {steps} steps, {seeds} seed(s), {result.threads} threads" +
                (result.dnnl_max_cpu_isa is { } isa ? $", DNNL_MAX_CPU_ISA={isa}" : ""));
            Console.WriteLine($"  {"dtype",-6} {"s/step",9} {"s/image",9} {"x " + names[0],9} {"PSNR dB",9} {"min",7}");
            foreach (var r in rows)
                Console.WriteLine($"  {r.dtype,-6} {r.step_median_seconds,9:0.000} {r.image_median_seconds,9:0.00} {r.slowdown_vs_reference,9:0.00} " +
                    $"{(r.psnr_db_mean is double m ? m.ToString("0.0") : "ref"),9} {(r.psnr_db_min is double n ? n.ToString("0.0") : ""),7}");
            if (share < 0.75)
                Console.WriteLine($"warning: this process got {share:P0} of its threads' time: another process was busy, so the times say little");
            if (json is not null)
            {
                AtomicFile.WriteAllText(json, JsonSerializer.Serialize(result, new JsonSerializerOptions { WriteIndented = true }));
                Console.WriteLine($"wrote {json}");
            }
            return 0;
        }
        finally
        {
            foreach (var s in subjects) s.Dispose();
            if (temp is not null && Directory.Exists(temp)) Directory.Delete(temp, true);
        }
    }

    private static ScalarType ParseDtype(string name) => RuntimeOptions.ParseDtype(name, "--dtypes") switch
    {
        ScalarType.Float16 => throw new DiffusionCacheException("--dtypes: fp16 needs a GPU; this benchmark runs on the CPU (use bf16)"),
        var type => type,
    };

    /// <summary>The embedded model: every class for one seed, DDIM, guidance 4 (what <c>generate</c> samples).</summary>
    private sealed class ClassConditional(string folder, ScalarType dtype, int steps, CancellationToken cancel) : ISubject
    {
        private readonly ClassConditionalPipeline _pipeline = ClassConditionalPipeline.Load(folder, new PipelineLoadOptions(dtype));

        public Tensor Sample(long seed, IStepObserver timer)
        {
            using var scheduler = _pipeline.CreateScheduler("ddim");
            var labels = Enumerable.Range(0, _pipeline.NumLabels).Select(l => (long)l).ToArray();
            return _pipeline.Generate(scheduler, labels, Math.Max(seed, 0), seed < 0 ? 1 : steps, 4.0, observers: [timer], cancel: cancel);
        }

        public void Dispose() => _pipeline.Dispose();
    }

    /// <summary>A Stable Diffusion folder: one prompt, its own scheduler, guidance 7.5.</summary>
    private sealed class TextToImageSubject(string folder, ScalarType dtype, int steps, int size, CancellationToken cancel) : ISubject
    {
        private readonly TextToImagePipeline _pipeline = TextToImagePipeline.Open(folder, new PipelineLoadOptions(dtype));

        public Tensor Sample(long seed, IStepObserver timer)
        {
            using var scheduler = _pipeline.CreateScheduler();
            var call = new TextToImage
            {
                Prompts = ["a photograph of an astronaut riding a horse"], Steps = seed < 0 ? 1 : steps, GuidanceScale = 7.5,
                Height = size, Width = size, Seed = Math.Max(seed, 0),
            };
            return _pipeline.Generate(scheduler, call, observers: [timer], cancel: cancel);
        }

        public void Dispose() => _pipeline.Dispose();
    }
}
