using System.Text.Json;
using DiffusionCache.Formats.Checkpoints;
using DiffusionCache.Formats.Safetensors;
using DiffusionCache.Models.Config;
using DiffusionCache.Models.Loading;
using DiffusionCache.Models.UNets;
using DiffusionCache.Parity;
using DiffusionCache.Tests.TestSupport;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Formats.Checkpoints;

/// <summary>The SD 1.x single-file checkpoint of the golden data (written by diffusers' own conversion script from
/// sd1-tiny) read through our key maps, and the errors for files we cannot read.</summary>
public sealed class LdmCheckpointTests
{
    public static string SingleFile => Golden.Path("sdxl", "models", "sd1-tiny.safetensors");
    public static string Folder => Golden.Path("sdxl", "models", "sd1-tiny");
    private static string KeymapFile => Golden.Path("sdxl", "models", "sd1-tiny.keymap.json");

    private static UNet2DConditionConfig UNetConfig => UNet2DConditionConfig.FromFile(Path.Combine(Folder, "unet", "config.json"));
    private static AutoencoderKLConfig VaeConfig => AutoencoderKLConfig.FromFile(Path.Combine(Folder, "vae", "config.json"));
    private static ClipTextConfig TextConfig => TextEncoderLoader.ReadConfig(Path.Combine(Folder, "text_encoder")).Config;

    private static List<(string Key, string Component, string Name)> Keymap()
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(KeymapFile));
        return doc.RootElement.GetProperty("entries").EnumerateArray()
            .Select(e => (e[0].GetString()!, e[1].GetString()!, e[2].GetString()!)).ToList();
    }

    private static LdmKeyMap[] Maps => [LdmKeyMap.UNet(UNetConfig), LdmKeyMap.Vae(VaeConfig), LdmKeyMap.ClipText()];

    [Fact]
    public void Every_golden_tensor_maps_to_exactly_one_diffusers_tensor_bitwise_equal_and_the_map_is_the_keymap()
    {
        using var golden = GoldenFolder.Open(Golden.Path("sdxl"));
        var @case = golden.Cases.Single(c => GoldenFolder.CaseId(c) == "single-file-keys");
        var result = SingleFileParity.RunKeys(golden, @case);
        Assert.True(result.Passed, result.Detail);
        Assert.Equal("518 tensors bitwise equal", result.Detail);
    }

    [Fact]
    public void The_maps_rename_every_keymap_row_and_name_it_back()
    {
        var rows = Keymap();
        Assert.Equal(518, rows.Count);
        var maps = Maps;
        foreach (var (key, component, name) in rows)
        {
            var map = Assert.Single(maps, m => m.Covers(key));
            Assert.Equal(component, map.Component);
            var target = Assert.Single(map.Map(key)!);
            Assert.Equal(name, target.Name);
            Assert.Equal(key, map.FileKey(name));
        }
    }

    [Fact]
    public void Only_the_vae_attention_weights_change_shape()
    {
        using var checkpoint = LdmCheckpoint.Open(SingleFile);
        var vae = checkpoint.Vae(VaeConfig);
        var reshaped = vae.Mapping.Where(m => m.Change == LdmChange.ConvToLinear).Select(m => m.FileKey).Order(StringComparer.Ordinal).ToArray();
        using var doc = JsonDocument.Parse(File.ReadAllBytes(KeymapFile));
        Assert.Equal(doc.RootElement.GetProperty("reshaped_keys").EnumerateArray().Select(e => e.GetString()!).Order(StringComparer.Ordinal), reshaped);
        var q = vae.Entry("decoder.mid_block.attentions.0.to_q.weight");
        Assert.Equal(new long[] { 8, 8 }, q.Shape);
        using var file = SafetensorsFile.Open(SingleFile);
        Assert.Equal(new long[] { 8, 8, 1, 1 }, file.Entry("first_stage_model.decoder.mid.attn_1.q.weight").Shape);
    }

    [Fact]
    public void Detects_the_family_from_the_text_encoder_keys()
    {
        using var checkpoint = LdmCheckpoint.Open(SingleFile);
        Assert.Equal(LdmFamily.StableDiffusion1, checkpoint.Family);
        Assert.Empty(checkpoint.IgnoredKeys);
        Assert.Equal(LdmFamily.StableDiffusion2, LdmCheckpoint.DetectFamily(
            ["model.diffusion_model.out.2.weight", "cond_stage_model.model.token_embedding.weight"], "x"));
    }

    [Fact]
    public void Sdxl_base_is_told_and_refiner_and_unknown_layouts_are_refused_by_name()
    {
        Assert.Equal(LdmFamily.StableDiffusionXL, LdmCheckpoint.DetectFamily(
            ["conditioner.embedders.0.transformer.text_model.final_layer_norm.weight", "conditioner.embedders.1.model.ln_final.weight"], "base.safetensors"));
        var sdxl = Assert.Throws<LdmCheckpointException>(() => LdmCheckpoint.DetectFamily(
            ["model.diffusion_model.out.2.weight", "conditioner.embedders.1.model.ln_final.weight"], "base.safetensors"));
        Assert.Contains("an SDXL checkpoint without its first text encoder (conditioner.embedders.0.transformer.*", sdxl.Message);
        var refiner = Assert.Throws<LdmCheckpointException>(() => LdmCheckpoint.DetectFamily(
            ["conditioner.embedders.0.model.ln_final.weight", "model.diffusion_model.out.2.weight"], "refiner.safetensors"));
        Assert.Contains("refiner checkpoints are not supported", refiner.Message);
        var unknown = Assert.Throws<LdmCheckpointException>(() => LdmCheckpoint.DetectFamily(
            ["model.diffusion_model.out.2.weight", "betas", "transformer.h.0.attn.weight", "lm_head.weight"], "gpt.safetensors"));
        Assert.StartsWith("gpt.safetensors: not a Stable Diffusion 1.x/2.x or SDXL single-file checkpoint", unknown.Message);
        Assert.Contains("'lm_head.weight'", unknown.Message);
        Assert.Contains("'transformer.h.0.attn.weight'", unknown.Message);
        Assert.Equal(["lm_head.weight", "transformer.h.0.attn.weight"], unknown.Keys);
        var noText = Assert.Throws<LdmCheckpointException>(() => LdmCheckpoint.DetectFamily(["model.diffusion_model.out.2.weight"], "unet.safetensors"));
        Assert.Contains("no text encoder", noText.Message);
        Assert.DoesNotContain('\n', unknown.Message + sdxl.Message + refiner.Message + noText.Message);
    }

    [Fact]
    public void An_unknown_file_is_refused_at_open_naming_its_keys()
    {
        using var dir = new TempFolder();
        SafetensorsWriter.Write(dir.File("x.safetensors"), [KeyValuePair.Create("encoder.layer.0.weight", zeros(2))]);
        var e = Assert.Throws<LdmCheckpointException>(() => LdmCheckpoint.Open(dir.File("x.safetensors")));
        Assert.Contains("'encoder.layer.0.weight'", e.Message);
    }

    [Fact]
    public void An_extra_key_is_an_error_naming_it()
    {
        using var dir = new TempFolder();
        // Inside the U-Net, where no module of the config has it.
        WriteVariant(dir.File("a.safetensors"), t => t.Add("model.diffusion_model.input_blocks.9.0.in_layers.0.weight", zeros(8)));
        using (var checkpoint = LdmCheckpoint.Open(dir.File("a.safetensors")))
        {
            var e = Assert.Throws<LdmCheckpointException>(() => checkpoint.UNet(UNetConfig));
            Assert.Contains("'model.diffusion_model.input_blocks.9.0.in_layers.0.weight'", e.Message);
            Assert.Equal(["model.diffusion_model.input_blocks.9.0.in_layers.0.weight"], e.Keys);
        }
        // Outside every component.
        WriteVariant(dir.File("b.safetensors"), t => t.Add("lora_unet_down.alpha", zeros(1)));
        var outside = Assert.Throws<LdmCheckpointException>(() => LdmCheckpoint.Open(dir.File("b.safetensors")));
        Assert.Contains("'lora_unet_down.alpha'", outside.Message);
        // Mapped by a module rule but not a parameter of the model: the loader names the file key.
        WriteVariant(dir.File("c.safetensors"), t => t.Add("model.diffusion_model.input_blocks.1.1.extra.weight", zeros(8)));
        using (var checkpoint = LdmCheckpoint.Open(dir.File("c.safetensors")))
        {
            var e = Assert.Throws<CheckpointMismatchException>(() => LoadUNet(checkpoint));
            Assert.Equal(["down_blocks.0.attentions.0.extra.weight"], e.Unexpected);
            Assert.Contains("(file key model.diffusion_model.input_blocks.1.1.extra.weight)", e.Message);
        }
    }

    [Fact]
    public void A_missing_key_is_an_error_naming_its_file_key()
    {
        using var dir = new TempFolder();
        WriteVariant(dir.File("m.safetensors"), t => t.RemoveAll(p => p.Key == "model.diffusion_model.output_blocks.2.1.conv.weight"));
        using var checkpoint = LdmCheckpoint.Open(dir.File("m.safetensors"));
        var e = Assert.Throws<CheckpointMismatchException>(() => LoadUNet(checkpoint));
        Assert.Equal(["up_blocks.0.upsamplers.0.conv.weight"], e.Missing);
        Assert.Contains("up_blocks.0.upsamplers.0.conv.weight (file key model.diffusion_model.output_blocks.2.1.conv.weight)", e.Message);
    }

    [Fact]
    public void Training_buffers_and_the_ema_copy_are_ignored_and_the_position_ids_dropped()
    {
        using var dir = new TempFolder();
        WriteVariant(dir.File("full.safetensors"), t =>
        {
            t.Add("alphas_cumprod", ones(1000));
            t.Add("model_ema.decay", tensor(0.9999f));
            t.Add("model_ema.diffusion_modeltime_embed0weight", zeros(32, 8));
            t.Add("cond_stage_model.transformer.text_model.embeddings.position_ids", arange(77L).unsqueeze(0));
        });
        using var checkpoint = LdmCheckpoint.Open(dir.File("full.safetensors"));
        Assert.Equal(["alphas_cumprod", "model_ema.decay", "model_ema.diffusion_modeltime_embed0weight"], checkpoint.IgnoredKeys);
        var text = checkpoint.TextEncoder(TextConfig);
        Assert.Contains("text_model.embeddings.position_ids", text.Names);
        using var model = ComponentLoader.LoadWeights(TextEncoderLoader.Create(Path.Combine(Folder, "text_encoder")), text,
            ScalarType.Float32, null, TextEncoderLoader.IsWeight);
    }

    [Fact]
    public void A_truncated_file_is_a_typed_error()
    {
        using var dir = new TempFolder();
        var bytes = File.ReadAllBytes(SingleFile);
        File.WriteAllBytes(dir.File("t.safetensors"), bytes[..(bytes.Length - 1000)]);
        var e = Assert.Throws<SafetensorsException>(() => LdmCheckpoint.Open(dir.File("t.safetensors")));
        Assert.Contains("t.safetensors", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void The_unet_from_the_single_file_computes_bitwise_what_the_folder_unet_computes()
    {
        using var checkpoint = LdmCheckpoint.Open(SingleFile);
        using var fromFile = LoadUNet(checkpoint);
        using var fromFolder = (UNet2DConditionModel)UNetLoader.Load(Path.Combine(Folder, "unet"));
        using var scope = NewDisposeScope();
        var g = new Generator(3);
        var input = new UNetInput(randn([2, 4, 8, 8], generator: g), tensor(new float[] { 10, 741 }), randn([2, 77, 16], generator: g), null);
        using var noGrad = no_grad();
        var a = fromFile.Forward(input);
        var b = fromFolder.Forward(input);
        Assert.True(SingleFileParity.Bitwise(a, b));
        Assert.True(a.abs().sum().item<float>() > 0);
    }

    private static UNet2DConditionModel LoadUNet(LdmCheckpoint checkpoint) =>
        ComponentLoader.LoadWeights(new UNet2DConditionModel(UNetConfig), checkpoint.UNet(UNetConfig), ScalarType.Float32, null);

    /// <summary>The golden single file with its tensor list edited.</summary>
    internal static void WriteVariant(string path, Action<List<KeyValuePair<string, Tensor>>> edit)
    {
        using var source = SafetensorsFile.Open(SingleFile);
        var tensors = source.Entries.Select(e => KeyValuePair.Create(e.Name, source.Load(e.Name))).ToList();
        edit(tensors);
        SafetensorsWriter.Write(path, tensors);
        foreach (var (_, t) in tensors) t.Dispose();
    }
}

internal static class TensorListExtensions
{
    public static void Add(this List<KeyValuePair<string, Tensor>> list, string name, Tensor tensor) => list.Add(KeyValuePair.Create(name, tensor));
}
