using DiffusionCache.Formats.Checkpoints;
using DiffusionCache.Models.Loading;
using DiffusionCache.Models.Text;
using DiffusionCache.Parity;
using DiffusionCache.Pipelines;
using DiffusionCache.Schedulers;
using DiffusionCache.Tests.Formats.Checkpoints;
using DiffusionCache.Tests.TestSupport;
using TorchSharp;

namespace DiffusionCache.Tests.Pipelines;

/// <summary>A Stable Diffusion pipeline from one LDM-layout file (the golden sd1-tiny single file, configs from the
/// sd1-tiny folder) against the same pipeline from the diffusers folder.</summary>
public sealed class StableDiffusionSingleFileTests
{
    private static string File => LdmCheckpointTests.SingleFile;
    private static string Folder => LdmCheckpointTests.Folder;

    private static TextToImage Call(string prompt) => new() { Prompts = [prompt], NegativePrompts = ["blurry"], Steps = 3, Seed = 4, Height = 32, Width = 32 };

    [Fact]
    public void Generates_bitwise_the_image_of_the_folder_pipeline()
    {
        using var fromFile = StableDiffusionPipeline.LoadSingleFile(File, Folder);
        using var fromFolder = StableDiffusionPipeline.Load(Folder);
        Assert.Equal("PNDMScheduler", fromFile.SchedulerConfig.ClassName);
        Assert.Equal(1000, fromFile.Tokenizer.VocabSize);   // the config folder's tokenizer
        Assert.Equal(File, fromFile.Folder);
        Assert.Contains(fromFile.Notes, n => n.StartsWith("Stable Diffusion 1.x single-file checkpoint; configs: the configs of", StringComparison.Ordinal));
        using var s1 = fromFile.CreateScheduler();
        using var s2 = fromFolder.CreateScheduler();
        using var a = fromFile.Generate(s1, Call("a lighthouse at dusk"));
        using var b = fromFolder.Generate(s2, Call("a lighthouse at dusk"));
        Assert.Equal(new long[] { 1, 3, 32, 32 }, a.shape);
        Assert.True(SingleFileParity.Bitwise(a, b));
        using var other = fromFolder.Generate(s2, Call("a lighthouse at dusk") with { Seed = 5 });
        Assert.False(SingleFileParity.Bitwise(a, other));   // the comparison can tell images apart
    }

    [Fact]
    public void Every_component_holds_the_folder_weights()
    {
        using var fromFile = StableDiffusionPipeline.LoadSingleFile(File, Folder);
        using var fromFolder = StableDiffusionPipeline.Load(Folder);
        foreach (var (mine, theirs) in new (TorchSharp.torch.nn.Module, TorchSharp.torch.nn.Module)[]
                     { (fromFile.UNet, fromFolder.UNet), (fromFile.Vae, fromFolder.Vae), (fromFile.TextEncoder, fromFolder.TextEncoder) })
        {
            var expected = theirs.named_parameters().ToDictionary(p => p.name, p => p.parameter);
            var actual = mine.named_parameters().ToList();
            Assert.Equal(expected.Count, actual.Count);
            foreach (var (name, p) in actual) Assert.True(SingleFileParity.Bitwise(p.detach(), expected[name].detach()), name);
        }
    }

    [Fact]
    public void A_given_tokenizer_is_used_when_the_config_folder_has_none()
    {
        using var dir = new TempFolder();
        foreach (var component in new[] { "unet", "vae", "text_encoder" })
        {
            Directory.CreateDirectory(dir.File(component));
            System.IO.File.Copy(Path.Combine(Folder, component, "config.json"), Path.Combine(dir.File(component), "config.json"));
        }
        Directory.CreateDirectory(dir.File("scheduler"));
        System.IO.File.Copy(Path.Combine(Folder, "scheduler", "scheduler_config.json"), dir.File("scheduler/scheduler_config.json"));
        var configs = SingleFileConfigs.FromFolder(dir.Path);
        Assert.Null(configs.TokenizerFolder);
        using var pipeline = StableDiffusionPipeline.LoadSingleFile(File, dir.Path, tokenizerFolder: Path.Combine(Folder, "tokenizer"));
        Assert.Equal(1000, pipeline.Tokenizer.VocabSize);
        // Without one, the shipped CLIP tokenizer (49408 ids) does not fit the tiny 1000-id text encoder: refused.
        var e = Assert.Throws<DiffusionCacheException>(() => StableDiffusionPipeline.LoadSingleFile(File, dir.Path));
        Assert.Contains("the tokenizer has 49408 ids, the text encoder 1000", e.Message);
    }

    [Fact]
    public void Missing_tensors_are_named_by_their_file_keys()
    {
        using var dir = new TempFolder();
        LdmCheckpointTests.WriteVariant(dir.File("m.safetensors"), t => t.RemoveAll(p => p.Key == "first_stage_model.decoder.mid.attn_1.q.weight"));
        var e = Assert.Throws<CheckpointMismatchException>(() => StableDiffusionPipeline.LoadSingleFile(dir.File("m.safetensors"), Folder));
        Assert.Contains("decoder.mid_block.attentions.0.to_q.weight (file key first_stage_model.decoder.mid.attn_1.q.weight)", e.Message);
        Assert.Contains("m.safetensors (vae)", e.Message);
    }

    [Fact]
    public void Refuses_what_a_single_file_cannot_be()
    {
        Assert.Throws<DiffusionCacheException>(() => StableDiffusionPipeline.LoadSingleFile(File, Folder, new PipelineLoadOptions(Variant: "fp16")));
        Assert.Throws<DiffusionCacheException>(() => StableDiffusionPipeline.LoadSingleFile(Folder));
        Assert.Contains("pickled", Assert.Throws<DiffusionCacheException>(() => StableDiffusionPipeline.LoadSingleFile("model.ckpt")).Message);
        Assert.Contains("a StableDiffusionXLPipeline folder", Assert.Throws<DiffusionCacheException>(() =>
            StableDiffusionPipeline.LoadSingleFile(File, Golden.Path("sdxl", "models", "sdxl-tiny"))).Message);
    }

    [Fact]
    public void Family_defaults_are_diffusers_from_single_file_defaults()
    {
        var sd1 = SingleFileConfigs.Defaults(LdmFamily.StableDiffusion1);
        Assert.Equal(64, sd1.UNet.SampleSize);
        Assert.Equal(768, sd1.TextEncoder.HiddenSize);
        Assert.Equal("DDIMScheduler", sd1.Scheduler.ClassName);
        Assert.Equal(PredictionType.Epsilon, sd1.Scheduler.PredictionType);
        Assert.Equal((0.00085, 0.012, BetaSchedule.ScaledLinear), (sd1.Scheduler.BetaStart, sd1.Scheduler.BetaEnd, sd1.Scheduler.BetaSchedule));
        Assert.Equal((1, TimestepSpacing.Leading, false, false), (sd1.Scheduler.StepsOffset, sd1.Scheduler.TimestepSpacing, sd1.Scheduler.ClipSample, sd1.Scheduler.SetAlphaToOne));
        var sd2 = SingleFileConfigs.Defaults(LdmFamily.StableDiffusion2);
        Assert.Equal(96, sd2.UNet.SampleSize);
        Assert.Equal(1024, sd2.UNet.CrossAttentionDim[0]);
        Assert.Equal((1024, 23, "gelu"), (sd2.TextEncoder.HiddenSize, sd2.TextEncoder.NumHiddenLayers, sd2.TextEncoder.HiddenAct));
        Assert.Equal(PredictionType.VPrediction, sd2.Scheduler.PredictionType);
    }

    [Fact]
    public void The_shipped_tokenizers_are_clip_vit_l14_with_sd2s_pad()
    {
        var sd1 = ClipTokenizer.Load(SingleFileConfigs.ShippedTokenizer(LdmFamily.StableDiffusion1));
        var sd2 = ClipTokenizer.Load(SingleFileConfigs.ShippedTokenizer(LdmFamily.StableDiffusion2));
        Assert.Equal((49408, 49407L), (sd1.VocabSize, sd1.PadId));
        Assert.Equal((49408, 0L), (sd2.VocabSize, sd2.PadId));
        Assert.Equal(sd1.Encode("a photo of a cat").Ids.Take(6), sd2.Encode("a photo of a cat").Ids.Take(6));
        Assert.Equal(49407L, sd2.Encode("a cat").Ids[3]);   // eos, then "!" padding
        Assert.Equal(0L, sd2.Encode("a cat").Ids[4]);
    }
}
