// One image from a class-conditional latent diffusion model with Block Caching, through the DiffusionCache package.
// Usage: dotnet run -- [MODEL_FOLDER] [OUT.png]   (default: the repository's embedded Fashion-MNIST model)
using DiffusionCache.Caching.BlockCaching;
using DiffusionCache.Formats.Images;
using DiffusionCache.Pipelines;

string model = args.Length > 0 ? args[0] : "../../models/fashion-ldm";
string output = args.Length > 1 ? args[1] : "t-shirt.png";

using var pipeline = ClassConditionalPipeline.Load(model);
using var scheduler = pipeline.CreateScheduler("ddim");
var schedule = CacheSchedule.Load(Path.Combine(model, "cache", "schedule-ddim-50.json"));
using var policy = new BlockCachePolicy(pipeline.UNet, schedule, pipeline.SolverClass("ddim"));
using var images = pipeline.Generate(scheduler, labels: [0], seed: 0, steps: 50, guidance: 4.0, policy);
PngImage.Write(output, images[0]);
Console.WriteLine($"wrote {Path.GetFullPath(output)}: {policy.Statistics.ReusedFraction:P0} of block evaluations reused");
