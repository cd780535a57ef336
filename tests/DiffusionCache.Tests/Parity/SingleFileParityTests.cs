using System.Text.Json;
using System.Text.Json.Nodes;
using DiffusionCache.Parity;
using DiffusionCache.Tests.Formats.Checkpoints;
using DiffusionCache.Tests.TestSupport;

namespace DiffusionCache.Tests.Parity;

/// <summary>The two single-file case types of the sdxl golden folder, run through the methods the sdxl suite
/// dispatches them to, and the same cases against a single file with one weight changed.</summary>
public sealed class SingleFileParityTests
{
    private static JsonElement Case(GoldenFolder folder, string id) => folder.Cases.Single(c => GoldenFolder.CaseId(c) == id);

    [Fact]
    public void The_golden_single_file_cases_pass()
    {
        using var golden = GoldenFolder.Open(Golden.Path("sdxl"));
        var keys = SingleFileParity.RunKeys(golden, Case(golden, "single-file-keys"));
        Assert.True(keys.Passed, keys.Detail);
        Assert.Equal(0, keys.MaxAbsError);
        var unet = SingleFileParity.RunUNet(golden, Case(golden, "single-file-unet-b2"));
        Assert.True(unet.Passed, unet.Detail);
        Assert.Equal("single-file-unet-b2", unet.CaseId);
    }

    [Fact]
    public void A_changed_weight_fails_both_cases()
    {
        using var dir = new TempFolder();
        using var golden = GoldenFolder.Open(Golden.Path("sdxl"));
        Directory.CreateDirectory(dir.File("models"));
        LdmCheckpointTests.WriteVariant(dir.File("models/changed.safetensors"), tensors =>
        {
            int i = tensors.FindIndex(t => t.Key == "model.diffusion_model.middle_block.1.proj_out.bias");
            tensors[i] = KeyValuePair.Create(tensors[i].Key, tensors[i].Value + 1e-3f);
        });
        // The cases with the single file pointing at the changed copy (absolute, so Resolve keeps it).
        JsonElement Changed(string id)
        {
            var node = JsonNode.Parse(Case(golden, id).GetRawText())!;
            node["single_file"] = dir.File("models/changed.safetensors");
            if (node["diffusers_folder"] is not null) node["diffusers_folder"] = golden.Resolve("models/sd1-tiny");
            if (node["keymap"] is not null) node["keymap"] = golden.Resolve("models/sd1-tiny.keymap.json");
            return JsonDocument.Parse(node.ToJsonString()).RootElement;
        }
        var keys = SingleFileParity.RunKeys(golden, Changed("single-file-keys"));
        Assert.False(keys.Passed);
        Assert.Contains("mid_block.attentions.0.proj_out.bias", keys.Detail);
        var unet = SingleFileParity.RunUNet(golden, Changed("single-file-unet-b2"));
        Assert.False(unet.Passed);
    }

    [Fact]
    public void A_missing_file_is_a_failed_case_not_an_exception()
    {
        using var golden = GoldenFolder.Open(Golden.Path("sdxl"));
        var node = JsonNode.Parse(Case(golden, "single-file-unet-b2").GetRawText())!;
        node["single_file"] = "models/nope.safetensors";
        var result = SingleFileParity.RunUNet(golden, JsonDocument.Parse(node.ToJsonString()).RootElement);
        Assert.False(result.Passed);
        Assert.Contains("nope.safetensors", result.Detail);
    }
}
