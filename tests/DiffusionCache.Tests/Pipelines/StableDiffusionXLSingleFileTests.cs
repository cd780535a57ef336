using DiffusionCache.Formats.Checkpoints;
using DiffusionCache.Formats.Safetensors;
using DiffusionCache.Models.Loading;
using DiffusionCache.Models.Text;
using DiffusionCache.Parity;
using DiffusionCache.Pipelines;
using DiffusionCache.Schedulers;
using DiffusionCache.Tests.Formats.Checkpoints;
using DiffusionCache.Tests.TestSupport;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Pipelines;

/// <summary>SDXL from one SGM-layout file: the golden sdxl-tiny pipeline written as SDXL 1.0 base's single file
/// (<see cref="LdmWriter.WriteSdxl"/>), read back with the folder's configs, against the folder pipeline. The file's
/// SDXL-specific keys are checked against diffusers 0.27.2's tables (<c>single_file_utils.py</c>:
/// <c>DIFFUSERS_TO_LDM_MAPPING</c>, <c>create_text_encoder_from_open_clip_checkpoint</c>) in
/// <see cref="The_sdxl_specific_keys_are_diffusers_names"/>; diffusers' own converter read the same file back to the
/// folder's tensors when this was written.</summary>
public sealed class StableDiffusionXLSingleFileTests
{
    private static string Folder => Golden.Path("sdxl", "models", "sdxl-tiny");

    private static TextToImage Call(int seed) => new()
    {
        Prompts = ["a red bicycle"], NegativePrompts = ["blurry"], Steps = 3, Seed = seed, Height = 32, Width = 32, GuidanceScale = 5,
    };

    private static string Write(TempFolder dir, Action<List<KeyValuePair<string, Tensor>>>? edit = null)
    {
        using var folder = StableDiffusionXLPipeline.Load(Folder);
        string path = dir.File("sdxl.safetensors");
        LdmWriter.WriteSdxl(path, folder, edit);
        return path;
    }

    [Fact]
    public void Generates_bitwise_the_image_of_the_folder_pipeline_with_every_weight_equal()
    {
        using var dir = new TempFolder();
        string file = Write(dir);
        using var fromFile = StableDiffusionXLPipeline.LoadSingleFile(file, Folder);
        using var fromFolder = StableDiffusionXLPipeline.Load(Folder);
        Assert.Equal("EulerDiscreteScheduler", fromFile.SchedulerConfig.ClassName);
        Assert.True(fromFile.ForceZerosForEmptyPrompt);
        Assert.Contains(fromFile.Notes, n => n.StartsWith("SDXL single-file checkpoint; configs: the configs of", StringComparison.Ordinal));
        foreach (var (mine, theirs) in new (nn.Module, nn.Module)[]
                     { (fromFile.UNet, fromFolder.UNet), (fromFile.Vae, fromFolder.Vae), (fromFile.Prompts1.Encoder, fromFolder.Prompts1.Encoder),
                       (fromFile.Prompts2.Encoder, fromFolder.Prompts2.Encoder) })
        {
            var expected = theirs.named_parameters().ToDictionary(p => p.name, p => p.parameter);
            var actual = mine.named_parameters().ToList();
            Assert.Equal(expected.Count, actual.Count);
            foreach (var (name, p) in actual) Assert.True(SingleFileParity.Bitwise(p.detach(), expected[name].detach()), name);
        }
        using var s1 = fromFile.CreateScheduler();
        using var s2 = fromFolder.CreateScheduler();
        using var a = fromFile.Generate(s1, Call(4));
        using var b = fromFolder.Generate(s2, Call(4));
        Assert.Equal(new long[] { 1, 3, 32, 32 }, a.shape);
        Assert.True(SingleFileParity.Bitwise(a, b));
        using var other = fromFolder.Generate(s2, Call(5));
        Assert.False(SingleFileParity.Bitwise(a, other));   // the comparison can tell images apart
    }

    [Fact]
    public void The_sdxl_specific_keys_are_diffusers_names()
    {
        using var dir = new TempFolder();
        using var checkpoint = LdmCheckpoint.Open(Write(dir));
        Assert.Equal(LdmFamily.StableDiffusionXL, checkpoint.Family);
        var configs = SingleFileConfigs.FromFolder(Folder, LdmFamily.StableDiffusionXL);
        var unet = checkpoint.UNet(configs.UNet);
        Assert.Equal("model.diffusion_model.label_emb.0.0.weight", unet.FileKey("add_embedding.linear_1.weight"));
        Assert.Equal("model.diffusion_model.label_emb.0.2.bias", unet.FileKey("add_embedding.linear_2.bias"));
        // down block 2 (16 channels, two transformer layers): input_blocks 1 (level 0), 2 (down), 3 (+attention), 4 (down), 5 (+attention)
        Assert.Equal("model.diffusion_model.input_blocks.5.1.transformer_blocks.1.attn2.to_k.weight",
            unet.FileKey("down_blocks.2.attentions.0.transformer_blocks.1.attn2.to_k.weight"));
        var text1 = checkpoint.TextEncoder(configs.TextEncoder);
        Assert.Equal("conditioner.embedders.0.transformer.text_model.encoder.layers.1.mlp.fc2.weight", text1.FileKey("text_model.encoder.layers.1.mlp.fc2.weight"));
        var text2 = checkpoint.TextEncoder2(configs.TextEncoder2!);
        Assert.Equal("text_encoder_2", text2.Component);
        Assert.Equal("conditioner.embedders.1.model.text_projection", text2.FileKey("text_projection.weight"));
        Assert.Equal("conditioner.embedders.1.model.transformer.resblocks.2.attn.in_proj_bias", text2.FileKey("text_model.encoder.layers.2.self_attn.v_proj.bias"));
        Assert.Equal("conditioner.embedders.1.model.transformer.resblocks.0.mlp.c_fc.weight", text2.FileKey("text_model.encoder.layers.0.mlp.fc1.weight"));
        // text_projection is stored [width 10, projection 8] and read as the linear weight [8, 10]
        using (var file = SafetensorsFile.Open(checkpoint.FilePath))
        {
            var entry = file.Entry("conditioner.embedders.1.model.text_projection");
            Assert.Equal(new long[] { 10, 8 }, entry.Shape);
            Assert.Equal(new long[] { 8, 10 }, text2.Entry("text_projection.weight").Shape);
            using var stored = file.Load(entry.Name);
            using var read = text2.Load("text_projection.weight");
            Assert.True(SingleFileParity.Bitwise(read, stored.t().contiguous()));
        }
        var map = LdmKeyMap.OpenClipText(configs.TextEncoder2!, LdmKeyMap.SdxlOpenClipPrefix, projection: true);
        Assert.Equal(["conditioner.embedders.1.model.logit_scale"], checkpoint.Keys.Where(map.IsIgnored));
    }

    [Fact]
    public void Loads_through_the_one_entry_point_as_sdxl_and_sd_files_as_sd()
    {
        using var dir = new TempFolder();
        string file = Write(dir);
        using (var pipeline = TextToImagePipeline.Load(file, Folder)) Assert.IsType<StableDiffusionXLPipeline>(pipeline);
        using (var pipeline = TextToImagePipeline.Load(LdmCheckpointTests.SingleFile, LdmCheckpointTests.Folder)) Assert.IsType<StableDiffusionPipeline>(pipeline);
        using (var pipeline = TextToImagePipeline.Load(Folder)) Assert.IsType<StableDiffusionXLPipeline>(pipeline);
        Assert.True(TextToImagePipeline.IsTextToImageModel(file));
        Assert.Contains("a config folder applies to single-file checkpoints",
            Assert.Throws<DiffusionCacheException>(() => TextToImagePipeline.Load(Folder, Folder)).Message);
    }

    [Fact]
    public void A_family_mismatch_between_file_loader_and_config_folder_is_refused()
    {
        using var dir = new TempFolder();
        string file = Write(dir);
        Assert.Contains("an SDXL checkpoint, not a Stable Diffusion 1.x/2.x one",
            Assert.Throws<LdmCheckpointException>(() => StableDiffusionPipeline.LoadSingleFile(file, LdmCheckpointTests.Folder)).Message);
        Assert.Contains("a Stable Diffusion 1.x checkpoint, not an SDXL one",
            Assert.Throws<LdmCheckpointException>(() => StableDiffusionXLPipeline.LoadSingleFile(LdmCheckpointTests.SingleFile, Folder)).Message);
        Assert.Contains("a StableDiffusionPipeline folder; SDXL single files need the configs of a StableDiffusionXLPipeline",
            Assert.Throws<DiffusionCacheException>(() => StableDiffusionXLPipeline.LoadSingleFile(file, LdmCheckpointTests.Folder)).Message);
    }

    [Fact]
    public void Missing_and_foreign_tensors_are_named_by_their_file_keys()
    {
        using var dir = new TempFolder();
        string missing = Write(dir, t => t.RemoveAll(p => p.Key == "conditioner.embedders.1.model.text_projection"));
        var e = Assert.Throws<CheckpointMismatchException>(() => StableDiffusionXLPipeline.LoadSingleFile(missing, Folder));
        Assert.Contains("text_projection.weight (file key conditioner.embedders.1.model.text_projection)", e.Message);
        Assert.Contains("(text_encoder_2)", e.Message);

        using var dir2 = new TempFolder();
        string extra = Write(dir2, t => t.Add(new("conditioner.embedders.1.model.transformer.resblocks.3.ln_1.bias", zeros(10))));
        var e2 = Assert.Throws<LdmCheckpointException>(() => StableDiffusionXLPipeline.LoadSingleFile(extra, Folder));
        Assert.Contains("'conditioner.embedders.1.model.transformer.resblocks.3.ln_1.bias'", e2.Message);

        using var dir3 = new TempFolder();
        string noClip = Write(dir3, t => t.RemoveAll(p => p.Key.StartsWith(LdmKeyMap.SdxlClipPrefix, StringComparison.Ordinal)));
        Assert.Contains("an SDXL checkpoint without its first text encoder",
            Assert.Throws<LdmCheckpointException>(() => LdmCheckpoint.Open(noClip)).Message);
    }

    [Fact]
    public void Sgms_denoiser_sigmas_are_not_weights_and_are_left_out_with_a_note()
    {
        using var dir = new TempFolder();
        string file = Write(dir, t => t.Add(new("denoiser.sigmas", linspace(0.03, 14.6, 1000))));
        using var pipeline = StableDiffusionXLPipeline.LoadSingleFile(file, Folder);
        Assert.Contains(pipeline.Notes, n => n.StartsWith("1 tensor of the file is not a weight the pipeline uses", StringComparison.Ordinal));
    }

    [Fact]
    public void Sdxl_defaults_are_diffusers_from_single_file_defaults()
    {
        var xl = SingleFileConfigs.Defaults(LdmFamily.StableDiffusionXL);
        Assert.Equal(128, xl.UNet.SampleSize);
        Assert.Equal((2048, "text_time", 2816), (xl.UNet.CrossAttentionDim[0], xl.UNet.AdditionEmbedType, xl.UNet.ProjectionClassEmbeddingsInputDim));
        Assert.Equal(0.13025, xl.Vae.ScalingFactor);
        Assert.Equal((768, 12, "quick_gelu"), (xl.TextEncoder.HiddenSize, xl.TextEncoder.NumHiddenLayers, xl.TextEncoder.HiddenAct));
        Assert.Equal((1280, 32, 20, 1280, "gelu"), (xl.TextEncoder2!.HiddenSize, xl.TextEncoder2.NumHiddenLayers, xl.TextEncoder2.NumAttentionHeads,
            xl.TextEncoder2.ProjectionDim, xl.TextEncoder2.HiddenAct));
        Assert.Equal("EulerDiscreteScheduler", xl.Scheduler.ClassName);
        Assert.Equal(PredictionType.Epsilon, xl.Scheduler.PredictionType);
        Assert.Equal((1, TimestepSpacing.Leading), (xl.Scheduler.StepsOffset, xl.Scheduler.TimestepSpacing));
        Assert.Equal(xl.TextEncoder.HiddenSize + xl.TextEncoder2.HiddenSize, xl.UNet.CrossAttentionDim[0]);
        Assert.Equal(xl.UNet.ProjectionClassEmbeddingsInputDim - 6 * xl.UNet.AdditionTimeEmbedDim, xl.TextEncoder2.ProjectionDim);
        var t1 = ClipTokenizer.Load(SingleFileConfigs.ShippedTokenizer(LdmFamily.StableDiffusionXL, 1));
        var t2 = ClipTokenizer.Load(SingleFileConfigs.ShippedTokenizer(LdmFamily.StableDiffusionXL, 2));
        Assert.Equal((49407L, 0L), (t1.PadId, t2.PadId));   // tokenizer_2 pads with "!"
    }
}
