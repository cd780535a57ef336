using DiffusionCache.Caching.BlockCaching;
using DiffusionCache.Caching.DeepCache;
using DiffusionCache.Models.Loading;
using DiffusionCache.Models.UNets;
using DiffusionCache.Pipelines;
using DiffusionCache.Tests.TestSupport;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Pipelines;

/// <summary>SDXL end to end on the tiny diffusers folder: both encoders, the added conditioning, every cache policy.</summary>
public sealed class StableDiffusionXLPipelineTests : IDisposable
{
    public static string Folder => Golden.Path("sdxl", "models", "sdxl-tiny");

    private readonly StableDiffusionXLPipeline _pipeline = StableDiffusionXLPipeline.Load(Folder);

    public void Dispose() => _pipeline.Dispose();

    private static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.equal(b).all().item<bool>();

    private static TextToImage Call(params string[] prompts) => new() { Prompts = prompts, Steps = 4, Seed = 3, Height = 16, Width = 24, GuidanceScale = 5 };

    [Fact]
    public void OpensThroughTheSharedTextToImageEntry()
    {
        Assert.True(TextToImagePipeline.IsTextToImageFolder(Folder));
        using var opened = TextToImagePipeline.Open(Folder);
        Assert.IsType<StableDiffusionXLPipeline>(opened);
        Assert.Equal("EulerDiscreteScheduler", _pipeline.SchedulerConfig.ClassName);
        Assert.True(_pipeline.ForceZerosForEmptyPrompt);
        Assert.Equal(_pipeline.UNet.SampleSize * _pipeline.VaeScaleFactor, _pipeline.DefaultHeight);
    }

    [Fact]
    public void GeneratesDeterministicImagesThatDependOnPromptAndSize()
    {
        using var scheduler = _pipeline.CreateScheduler();
        using var a = _pipeline.Generate(scheduler, Call("a red cube"));
        using var again = _pipeline.Generate(scheduler, Call("a red cube"));
        using var other = _pipeline.Generate(scheduler, Call("a blue sphere"));
        using var cropped = _pipeline.Generate(scheduler, Call("a red cube") with { CropsTopLeft = (64, 0) });
        Assert.Equal(new long[] { 1, 3, 16, 24 }, a.shape);
        Assert.True(Same(a, again));
        Assert.False(a.allclose(other));
        Assert.False(a.allclose(cropped));   // the time ids reach the U-Net
    }

    [Fact]
    public void NegativeEmbeddingsAreZerosOnlyWhenNoNegativePromptIsGiven()
    {
        using var zeroed = _pipeline.Encode(Call("a cat"));
        Assert.Equal(0f, zeroed.NegativePromptEmbeds!.abs().sum().item<float>());
        Assert.Equal(0f, zeroed.NegativePooledPromptEmbeds!.abs().sum().item<float>());
        using var empty = _pipeline.Encode(Call("a cat") with { NegativePrompts = [""] });
        Assert.True(empty.NegativePromptEmbeds!.abs().sum().item<float>() > 0);
        using var noGuidance = _pipeline.Encode(Call("a cat") with { GuidanceScale = 1 });
        Assert.Null(noGuidance.NegativePromptEmbeds);
    }

    [Fact]
    public void DeepCacheAndBlockCachingRunOnTheSdxlUNet()
    {
        using var scheduler = _pipeline.CreateScheduler();
        var call = Call("a lighthouse") with { Steps = 6 };
        using var uncached = _pipeline.Generate(scheduler, call);
        using (var every = new DeepCachePolicy(_pipeline.UNet, DeepCacheSchedule.Uniform(1), 0))
        using (var same = _pipeline.Generate(scheduler, call, every))
            Assert.True(Same(uncached, same));
        using (var deep = new DeepCachePolicy(_pipeline.UNet, DeepCacheSchedule.Uniform(3), 0))
        using (var cached = _pipeline.Generate(scheduler, call, deep))
            Assert.False(Same(uncached, cached));

        using var inputs = new PromptProfileInputs(_pipeline, ["a lighthouse", "a forest"], 1, 5.0, 8, 12);
        var profile = ProfileRunner.Run(_pipeline.UNet, new ProfileSettings
        {
            ModelId = "sdxl-tiny", Scheduler = _pipeline.SchedulerConfig, Steps = 6, Targets = BlockCachingTargets.Transformers,
        }, inputs);
        Assert.Equal(2, profile.NumConditions);
        var schedule = ScheduleBuilder.FromProfile(profile, 100);
        Assert.True(schedule.SkippedFraction > 0.5);
        using var policy = new BlockCachePolicy(_pipeline.UNet, schedule, _pipeline.SchedulerConfig.ClassName);
        using var blockCached = _pipeline.Generate(scheduler, call, policy);
        Assert.False(Same(uncached, blockCached));
        Assert.True(blockCached.isfinite().all().item<bool>());
    }

    [Fact]
    public void TheUNetRefusesMissingOrMisshapenAddedConditioning()
    {
        using var unet = (UNet2DConditionModel)UNetLoader.Load(Path.Combine(Folder, "unet"));
        using var scope = NewDisposeScope();
        var input = unet.ZeroInput(1, 4, 4);
        using (no_grad()) Assert.Equal(new long[] { 1, 4, 4, 4 }, unet.Forward(input).shape);
        Assert.Contains("time_ids must be [1, 6]", Assert.Throws<DiffusionCacheException>(
            () => unet.Forward(input with { TimeIds = zeros(1, 5) })).Message);
        Assert.Contains("text_embeds", Assert.Throws<DiffusionCacheException>(() => unet.Forward(input with { TextEmbeds = null })).Message);
    }
}

/// <summary>SDXL folders we cannot run: one message naming the problem.</summary>
public sealed class StableDiffusionXLPipelineLoadErrorTests
{
    [Fact]
    public void AFolderWithoutTextEncoder2IsNamed()
    {
        using var dir = new TempFolder();
        FolderCopy.Copy(StableDiffusionXLPipelineTests.Folder, dir.Path);
        string index = dir.File("model_index.json");
        File.WriteAllText(index, File.ReadAllText(index).Replace("\"text_encoder_2\"", "\"unused_entry\""));
        Assert.Contains("text_encoder_2", Assert.Throws<DiffusionCacheException>(() => StableDiffusionXLPipeline.Load(dir.Path)).Message);
    }

    [Fact]
    public void ARefinerPipelineIsNotSupportedYet()
    {
        using var dir = new TempFolder();
        FolderCopy.Copy(StableDiffusionXLPipelineTests.Folder, dir.Path);
        string index = dir.File("model_index.json");
        File.WriteAllText(index, File.ReadAllText(index).Replace("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline"));
        Assert.Contains("refiner", Assert.Throws<DiffusionCacheException>(() => TextToImagePipeline.Open(dir.Path)).Message);
    }
}
