using System.Text.Json;
using DiffusionCache.Caching.BlockCaching;
using DiffusionCache.Cli;
using DiffusionCache.Formats.Images;
using DiffusionCache.Tests.TestSupport;
using SkiaSharp;

namespace DiffusionCache.Tests.Cli.Commands;

/// <summary>The CLI's text-to-image path on a real diffusers folder: generate writes one PNG per image with its
/// settings, profile → schedule → cached generate works on prompts, and bad input writes nothing.</summary>
public sealed class TextToImageCommandTests
{
    private static string Model => Golden.Path("sdxl", "models", "sd1-tiny");

    [Fact]
    public void Generate_writes_one_png_per_image_with_its_parameters()
    {
        using var dir = new TempFolder();
        int rc = CliApp.Run("generate", "--model", Model, "--prompt", "a watercolor fox", "--negative-prompt", "blurry",
            "--steps", "3", "--seeds", "2", "--seed", "7", "--size", "32", "--cache", "deepcache:2", "--out", dir.Path);
        Assert.Equal(0, rc);
        var files = Directory.GetFiles(dir.Path).Select(f => Path.GetFileName(f)!).Order().ToArray();
        Assert.Equal(["seed7.png", "seed8.png"], files);
        using var bitmap = SKBitmap.Decode(dir.File("seed8.png"));
        Assert.Equal((32, 32), (bitmap.Width, bitmap.Height));
        string parameters = PngImage.ReadText(dir.File("seed8.png"))["parameters"];
        var lines = parameters.Split('\n');
        Assert.Equal("a watercolor fox", lines[0]);
        Assert.Equal("Negative prompt: blurry", lines[1]);
        Assert.Contains("Steps: 3", lines[2]);
        Assert.Contains("Seed: 8", lines[2]);
        Assert.Contains("CFG scale: 7.5", lines[2]);
        Assert.Contains("Size: 32x32", lines[2]);
        Assert.Contains("Sampler: PNDMScheduler", lines[2]);
        Assert.Contains("Cache: DeepCache", lines[2]);
        Assert.Contains($"Version: DiffusionCache {DiffusionCache.Runtime.BuildInfo.Version}", lines[2]);
    }

    [Fact]
    public void Profile_schedule_and_cached_generate_run_on_prompts()
    {
        using var dir = new TempFolder();
        File.WriteAllLines(dir.File("prompts.txt"), ["a red house", "", "a green tree", "a blue lake"]);
        Assert.Equal(0, CliApp.Run("profile", "--model", Model, "--steps", "6", "--conditions", "2", "--seeds", "2",
            "--prompts", dir.File("prompts.txt"), "--resolution", "4", "--out", dir.File("profile")));
        var profile = BlockProfile.Load(Path.Combine(dir.Path, "profile", "profile.json"));
        Assert.Equal(2, profile.NumConditions);
        Assert.Contains("prompts", profile.Conditions);
        Assert.Equal(0, CliApp.Run("schedule", "--profile", Path.Combine(dir.Path, "profile", "profile.json"), "--delta", "0.5", "--out", dir.File("schedule.json")));
        Assert.Equal(0, CliApp.Run("generate", "--model", Model, "--prompt", "a red house", "--steps", "6", "--seeds", "1",
            "--size", "32", "--cache", dir.File("schedule.json"), "--out", dir.File("images")));
        Assert.Contains("Block Caching", PngImage.ReadText(Path.Combine(dir.Path, "images", "seed0.png"))["parameters"]);
    }

    [Fact]
    public void Bench_cache_compares_policies_on_prompts()
    {
        using var dir = new TempFolder();
        File.WriteAllLines(dir.File("prompts.txt"), ["a red house", "a green tree"]);
        Assert.Equal(0, CliApp.Run("bench-cache", "--model", Model, "--prompts", dir.File("prompts.txt"), "--solver", "ddim", "--steps", "6",
            "--batch", "2", "--latent", "4", "--repeats", "1", "--deepcache", "2", "--deltas", "0.5", "--out", dir.Path, "--json", dir.File("rows.json")));
        using var json = JsonDocument.Parse(File.ReadAllText(dir.File("rows.json")));
        var names = json.RootElement.EnumerateArray().Select(r => r.GetProperty("name").GetString()).ToList();
        Assert.Contains("DeepCache N=2 branch 0", names);
        Assert.Contains("BlockCache δ=0.5", names);
        Assert.NotEqual(0, CliApp.Run("bench-cache", "--model", Model, "--steps", "6", "--out", dir.File("none")));   // no --prompts
        Assert.False(Directory.Exists(dir.File("none")));
    }

    [Theory]
    [InlineData("--size", "30")]
    [InlineData("--steps", "0")]
    [InlineData("--cache", "bogus")]
    [InlineData("--solver", "heun")]
    [InlineData("--clip-skip", "9")]
    [InlineData("--dtype", "fp16")]
    [InlineData("--dtype", "int8")]
    [InlineData("--device", "cuda")]
    [InlineData("--device", "tpu")]
    [InlineData("--threads", "0")]
    public void Bad_input_fails_before_writing_any_png(string option, string value)
    {
        using var dir = new TempFolder();
        int rc = CliApp.Run("generate", "--model", Model, "--prompt", "a cat", "--steps", "2", "--seeds", "1", option, value, "--out", dir.File("out"));
        Assert.NotEqual(0, rc);
        Assert.False(Directory.Exists(dir.File("out")) && Directory.EnumerateFileSystemEntries(dir.File("out")).Any());
    }

    [Fact]
    public void A_schedule_profiled_on_another_model_is_refused()
    {
        using var dir = new TempFolder();
        string foreign = Repository.Path("models", "fashion-ldm", "cache", "schedule-ddim-50.json");
        int rc = CliApp.Run("generate", "--model", Model, "--prompt", "a cat", "--solver", "ddim", "--steps", "50", "--cache", foreign, "--out", dir.File("out"));
        Assert.NotEqual(0, rc);
        Assert.False(Directory.Exists(dir.File("out")) && Directory.EnumerateFileSystemEntries(dir.File("out")).Any());
    }

    [Fact]
    public void Prompt_without_a_text_to_image_model_is_an_error()
    {
        Assert.NotEqual(0, CliApp.Run("generate", "--prompt", "a cat", "--steps", "2", "--seeds", "1"));
        Assert.NotEqual(0, CliApp.Run("generate", "--model", Model, "--steps", "2"));
    }
}

/// <summary>The same CLI path with an SDXL folder.</summary>
public sealed class SdxlTextToImageCommandTests
{
    [Fact]
    public void Generate_runs_an_sdxl_folder()
    {
        using var dir = new TempFolder();
        int rc = CliApp.Run("generate", "--model", Golden.Path("sdxl", "models", "sdxl-tiny"), "--prompt", "a tiny robot",
            "--steps", "3", "--seeds", "1", "--height", "16", "--width", "24", "--guidance", "5", "--cache", "deepcache:2", "--out", dir.Path);
        Assert.Equal(0, rc);
        using var bitmap = SKBitmap.Decode(dir.File("seed0.png"));
        Assert.Equal((24, 16), (bitmap.Width, bitmap.Height));
        Assert.Contains("Sampler: EulerDiscreteScheduler", PngImage.ReadText(dir.File("seed0.png"))["parameters"]);
    }
}

/// <summary>The main job refuses an output it could not write before sampling anything.</summary>
public sealed class GenerateOutputTests
{
    [Fact]
    public void An_unwritable_out_fails_before_sampling()
    {
        using var dir = new TempFolder();
        File.WriteAllText(dir.File("file"), "x");
        var error = new StringWriter();
        var previous = Console.Error;
        Console.SetError(error);
        try
        {
            Assert.NotEqual(0, CliApp.Run("generate", "--seeds", "1", "--steps", "2", "--out", Path.Combine(dir.File("file"), "samples.png")));
        }
        finally
        {
            Console.SetError(previous);
        }
        Assert.Contains("cannot be written", error.ToString());
        Assert.Equal(["file"], Directory.GetFileSystemEntries(dir.Path).Select(f => Path.GetFileName(f)!));
    }
}
