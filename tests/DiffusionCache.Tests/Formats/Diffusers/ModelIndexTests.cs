using DiffusionCache.Formats.Diffusers;
using DiffusionCache.Tests.TestSupport;

namespace DiffusionCache.Tests.Formats.Diffusers;

public sealed class ModelIndexTests
{
    [Fact]
    public void ReadsComponentsAndSettingsOfARealPipelineFolder()
    {
        var index = ModelIndex.Load(Golden.Path("sdxl", "models", "sdxl-tiny"));
        Assert.Equal("StableDiffusionXLPipeline", index.ClassName);
        Assert.Equal(("transformers", "CLIPTextModelWithProjection"), (index.Components["text_encoder_2"].Library, index.Components["text_encoder_2"].ClassName));
        Assert.False(index.Components["feature_extractor"].IsPresent);
        Assert.True(index.Bool("force_zeros_for_empty_prompt", false));
        Assert.EndsWith("unet", index.Require("unet", "UNet2DConditionModel"));
    }

    [Fact]
    public void ErrorsNameTheProblem()
    {
        using var dir = new TempFolder();
        Assert.Contains("model_index.json not found", Assert.Throws<DiffusionCacheException>(() => ModelIndex.Load(dir.Path)).Message);
        File.WriteAllText(dir.File("model_index.json"), "{\"_class_name\": \"StableDiffusionPipeline\", \"unet\": [\"diffusers\", \"UNet2DConditionModel\"], \"vae\": [\"diffusers\", \"AutoencoderTiny\"]}");
        var index = ModelIndex.Load(dir.Path);
        Assert.Contains("AutoencoderTiny", Assert.Throws<DiffusionCacheException>(() => index.Require("vae", "AutoencoderKL")).Message);
        Assert.Contains("component folder not found", Assert.Throws<DiffusionCacheException>(() => index.Require("unet", "UNet2DConditionModel")).Message);
        Assert.Contains("no 'text_encoder'", Assert.Throws<DiffusionCacheException>(() => index.Require("text_encoder")).Message);
        File.WriteAllText(dir.File("model_index.json"), "{ not json");
        Assert.Contains("not valid JSON", Assert.Throws<DiffusionCacheException>(() => ModelIndex.Load(dir.Path)).Message);
    }
}
