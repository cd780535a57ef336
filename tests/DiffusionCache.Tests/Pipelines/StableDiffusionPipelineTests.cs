using DiffusionCache.Caching.DeepCache;
using DiffusionCache.Pipelines;
using DiffusionCache.Tests.TestSupport;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Pipelines;

/// <summary>The whole text-to-image path on a real diffusers folder (sd1-tiny, written by diffusers'
/// <c>save_pretrained</c>): load, tokenize, encode, denoise, decode.</summary>
public sealed class StableDiffusionPipelineTests : IDisposable
{
    public static string Folder => Golden.Path("sdxl", "models", "sd1-tiny");

    private readonly StableDiffusionPipeline _pipeline = StableDiffusionPipeline.Load(Folder);

    public void Dispose() => _pipeline.Dispose();

    private static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.equal(b).all().item<bool>();

    private static TextToImage Call(params string[] prompts) => new() { Prompts = prompts, Steps = 3, Seed = 1, Height = 32, Width = 32 };

    [Fact]
    public void LoadsEveryComponentOfTheFolder()
    {
        Assert.Equal("PNDMScheduler", _pipeline.SchedulerConfig.ClassName);
        Assert.Equal(8, _pipeline.VaeScaleFactor);
        Assert.Equal(_pipeline.UNet.SampleSize * 8, _pipeline.DefaultHeight);
        Assert.Equal(1000, _pipeline.Tokenizer.VocabSize);
        Assert.Empty(_pipeline.Notes);   // its safety checker entry is [null, null]
        Assert.True(StableDiffusionPipeline.IsFolder(Folder));
        Assert.False(StableDiffusionPipeline.IsFolder(Golden.Path("sdxl", "models", "sdxl-tiny")));
    }

    [Fact]
    public void GeneratesDeterministicImagesThatDependOnThePrompt()
    {
        using var scheduler = _pipeline.CreateScheduler();
        using var a = _pipeline.Generate(scheduler, Call("a red cat"));
        using var again = _pipeline.Generate(scheduler, Call("a red cat"));
        using var other = _pipeline.Generate(scheduler, Call("a blue dog"));
        using var otherSeed = _pipeline.Generate(scheduler, Call("a red cat") with { Seed = 2 });
        Assert.Equal(new long[] { 1, 3, 32, 32 }, a.shape);
        Assert.True(a.isfinite().all().item<bool>());
        Assert.True(a.ge(-1).all().item<bool>() && a.le(1).all().item<bool>());
        Assert.True(Same(a, again));
        Assert.False(a.allclose(other));
        Assert.False(a.allclose(otherSeed));
    }

    [Fact]
    public void BatchesPromptsAndImagesPerPromptAsDiffusersRepeatsThem()
    {
        using var scope = NewDisposeScope();
        var request = _pipeline.Request(Call("a", "b") with { ImagesPerPrompt = 2, NegativePrompts = ["x"] });
        Assert.Equal(4, request.Batch);
        Assert.Equal((4, 4), (request.Height, request.Width));
        using var context = request.Context!;
        using var uncond = request.UnconditionalContext!;
        Assert.True(Same(context[0], context[1]) && Same(context[2], context[3]) && !Same(context[1], context[2]));
        Assert.True(Same(uncond[0], uncond[3]));
        using var single = _pipeline.Prompts.Encode(["b"]);
        Assert.True(Same(context[2], single[0]));
    }

    [Fact]
    public void EncodesEachPromptOncePerPipeline()
    {
        using var scheduler = _pipeline.CreateScheduler();
        var before = _pipeline.Prompts.CacheStatistics;
        for (int seed = 0; seed < 3; seed++)
            using (_pipeline.Generate(scheduler, Call("a lighthouse at night") with { Seed = seed })) { }
        var after = _pipeline.Prompts.CacheStatistics;
        Assert.Equal(2, after.Misses - before.Misses);   // the prompt and the empty negative prompt
        Assert.Equal(4, after.Hits - before.Hits);
    }

    [Fact]
    public void GuidanceOneRunsWithoutTheNegativeBatch()
    {
        using var scope = NewDisposeScope();
        var request = _pipeline.Request(Call("a") with { GuidanceScale = 1.0 });
        Assert.Null(request.UnconditionalContext);
        Assert.False(request.UsesGuidance);
        request.Context!.Dispose();
    }

    [Fact]
    public void ClipSkipConditionsOnAnEarlierLayer()
    {
        using var scope = NewDisposeScope();
        var last = _pipeline.Prompts.Encode(["a cat"]);
        var skipped = _pipeline.Prompts.Encode(["a cat"], clipSkip: 1);
        var ids = tensor(_pipeline.Tokenizer.Encode("a cat").Ids.ToArray()).unsqueeze(0);
        using var output = _pipeline.TextEncoder.Forward(ids, outputHiddenStates: true);
        Assert.True(last.allclose(output.LastHiddenState));
        Assert.True(skipped.allclose(_pipeline.TextEncoder.FinalLayerNorm(output.HiddenStates![^2])));
        Assert.Throws<DiffusionCacheException>(() => _pipeline.Prompts.Encode(["a"], clipSkip: 5));
    }

    [Fact]
    public void GivenLatentsAreTheSeededNoiseTheSamplerWouldDraw()
    {
        using var scheduler = _pipeline.CreateScheduler();
        using var generator = new Generator(5);
        using var noise = randn([1, 4, 4, 4], ScalarType.Float32, generator: generator);
        using var seeded = _pipeline.Generate(scheduler, Call("a") with { Seed = 5 });
        using var given = _pipeline.Generate(scheduler, Call("a") with { Seed = 99, Latents = noise });
        Assert.True(Same(seeded, given));
    }

    [Fact]
    public void DeepCacheWithIntervalOneIsExactlyUncachedAndLargerIntervalsDiffer()
    {
        using var scheduler = _pipeline.CreateScheduler("ddim");
        var call = Call("a castle") with { Steps = 6 };
        using var uncached = _pipeline.Generate(scheduler, call);
        using (var everyStep = new DeepCachePolicy(_pipeline.UNet, DeepCacheSchedule.Uniform(1), 0))
        using (var same = _pipeline.Generate(scheduler, call, everyStep))
            Assert.True(Same(uncached, same));
        using var policy = new DeepCachePolicy(_pipeline.UNet, DeepCacheSchedule.Uniform(3), 0);
        using var cached = _pipeline.Generate(scheduler, call, policy);
        Assert.False(Same(uncached, cached));
        Assert.True(cached.isfinite().all().item<bool>());
    }

    [Fact]
    public void PromptsLongerThanTheEncoderAreTruncatedWithAWarning()
    {
        var warnings = new List<string>();
        _pipeline.Warning += warnings.Add;
        using var context = _pipeline.Prompts.Encode([string.Join(' ', Enumerable.Repeat("cat", 100))]);
        Assert.Equal(new long[] { 1, 77, 16 }, context.shape);
        Assert.Contains(warnings, w => w.Contains("25 were dropped", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData(30, 32)]
    [InlineData(32, 12)]
    [InlineData(0, 32)]
    public void SizesNotDivisibleByEightAreRefused(int height, int width)
    {
        var e = Assert.Throws<DiffusionCacheException>(() => _pipeline.Request(Call("a") with { Height = height, Width = width }));
        Assert.Contains("multiples of 8", e.Message);
    }

    [Fact]
    public void MismatchedNegativePromptsAreRefused()
    {
        Assert.Contains("negative prompts", Assert.Throws<DiffusionCacheException>(
            () => _pipeline.Request(Call("a", "b", "c") with { NegativePrompts = ["x", "y"] })).Message);
    }
}

/// <summary>Loading in another compute type: bf16 runs on CPU, every component converted (the text encoder too).</summary>
public sealed class StableDiffusionPipelineDtypeTests
{
    [Fact]
    public void Bf16_generates_an_image_close_to_fp32()
    {
        using var fp32 = StableDiffusionPipeline.Load(StableDiffusionPipelineTests.Folder);
        using var bf16 = StableDiffusionPipeline.Load(StableDiffusionPipelineTests.Folder, new PipelineLoadOptions(ScalarType.BFloat16));
        Assert.Equal(ScalarType.BFloat16, bf16.TextEncoder.parameters().First().dtype);
        Assert.Equal(ScalarType.BFloat16, bf16.UNet.parameters().First().dtype);
        var call = new TextToImage { Prompts = ["a cat"], Steps = 3, Seed = 1, Height = 32, Width = 32 };
        using var s1 = fp32.CreateScheduler();
        using var s2 = bf16.CreateScheduler();
        using var a = fp32.Generate(s1, call);
        using var b = bf16.Generate(s2, call);
        Assert.Equal(ScalarType.Float32, b.dtype);
        Assert.True(b.isfinite().all().item<bool>());
        double psnr = DiffusionCache.Evaluation.ImageMetrics.Psnr(a, b, 2.0);
        Assert.True(psnr > 20, $"PSNR {psnr:0.0} dB");
    }
}

/// <summary>Folders that are not a Stable Diffusion pipeline we can run: one message naming the problem.</summary>
public sealed class StableDiffusionPipelineLoadErrorTests
{
    [Fact]
    public void AFolderWithoutModelIndexIsNotAPipeline()
    {
        using var dir = new TempFolder();
        Assert.Contains("model_index.json not found", Assert.Throws<DiffusionCacheException>(() => StableDiffusionPipeline.Load(dir.Path)).Message);
    }

    [Fact]
    public void AnUnsupportedComponentClassIsNamed()
    {
        using var dir = new TempFolder();
        FolderCopy.Copy(StableDiffusionPipelineTests.Folder, dir.Path);
        string index = dir.File("model_index.json");
        File.WriteAllText(index, File.ReadAllText(index).Replace("\"AutoencoderKL\"", "\"AutoencoderTiny\""));
        Assert.Contains("AutoencoderTiny", Assert.Throws<DiffusionCacheException>(() => StableDiffusionPipeline.Load(dir.Path)).Message);
    }

    [Fact]
    public void ATokenizerFolderMissingAFileIsNamed()
    {
        using var dir = new TempFolder();
        FolderCopy.Copy(StableDiffusionPipelineTests.Folder, dir.Path);
        File.Delete(Path.Combine(dir.Path, "tokenizer", "merges.txt"));
        Assert.Contains("merges.txt", Assert.Throws<DiffusionCacheException>(() => StableDiffusionPipeline.Load(dir.Path)).Message);
    }

    [Fact]
    public void AnotherPipelineClassIsRefused()
    {
        Assert.Contains("StableDiffusionXLPipeline", Assert.Throws<DiffusionCacheException>(
            () => StableDiffusionPipeline.Load(Golden.Path("sdxl", "models", "sdxl-tiny"))).Message);
    }
}

/// <summary>The C# example of the README, as written there (only the folder and file paths differ).</summary>
public sealed class ReadmeExampleTests
{
    [Fact]
    public void TheReadmeSnippetRuns()
    {
        using var dir = new TempFolder();
        using var sd = StableDiffusionPipeline.Load(StableDiffusionPipelineTests.Folder);
        using var scheduler = sd.CreateScheduler("ddim");
        using var cache = new DeepCachePolicy(sd.UNet, DeepCacheSchedule.Uniform(3), branch: 0);
        using var images = sd.Generate(scheduler, new TextToImage { Prompts = ["a red fox in snow"], Steps = 25, Seed = 1 }, cache);
        DiffusionCache.Formats.Images.PngImage.Write(dir.File("fox.png"), images[0]);
        Assert.True(File.Exists(dir.File("fox.png")));
    }
}
