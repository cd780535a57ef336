using System.Diagnostics;
using DiffusionCache.Cli;
using DiffusionCache.Formats.Images;
using DiffusionCache.Formats.Safetensors;
using DiffusionCache.Tests.Formats.Checkpoints;
using DiffusionCache.Tests.TestSupport;
using SkiaSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Cli.Commands;

/// <summary><c>generate --model FILE.safetensors --config DIR --prompt …</c>: a single-file checkpoint on the
/// command line, and files it must refuse with one line and no image.</summary>
public sealed class SingleFileCommandTests
{
    private static string File => LdmCheckpointTests.SingleFile;
    private static string Config => LdmCheckpointTests.Folder;

    private static bool NoPng(string dir) => !Directory.Exists(dir) || !Directory.EnumerateFiles(dir, "*.png", SearchOption.AllDirectories).Any();

    [Fact]
    public void Generate_with_a_single_file_writes_the_images_the_folder_writes()
    {
        using var dir = new TempFolder();
        string[] common = ["--prompt", "a red kite", "--steps", "2", "--seeds", "2", "--size", "32", "--cache", "none"];
        Assert.Equal(0, CliApp.Run(["generate", "--model", File, "--config", Config, .. common, "--out", dir.File("file")]));
        Assert.Equal(0, CliApp.Run(["generate", "--model", Config, .. common, "--out", dir.File("folder")]));
        Assert.Equal(["seed0.png", "seed1.png"], Directory.GetFiles(dir.File("file")).Select(f => Path.GetFileName(f)!).Order().ToArray());
        foreach (var name in new[] { "seed0.png", "seed1.png" })
        {
            using var a = SKBitmap.Decode(Path.Combine(dir.File("file"), name));
            using var b = SKBitmap.Decode(Path.Combine(dir.File("folder"), name));
            Assert.Equal((32, 32), (a.Width, a.Height));
            Assert.Equal(b.Pixels, a.Pixels);
        }
        Assert.Contains("Model: sd1-tiny.safetensors", PngImage.ReadText(Path.Combine(dir.File("file"), "seed1.png"))["parameters"]);
    }

    [Fact]
    public void Generate_and_profile_take_an_sdxl_single_file()
    {
        using var dir = new TempFolder();
        string sdxl = Golden.Path("sdxl", "models", "sdxl-tiny");
        using (var pipeline = DiffusionCache.Pipelines.StableDiffusionXLPipeline.Load(sdxl)) LdmWriter.WriteSdxl(dir.File("xl.safetensors"), pipeline);
        string[] common = ["--prompt", "a red kite", "--steps", "2", "--seeds", "1", "--size", "32", "--cache", "none", "--guidance", "5"];
        Assert.Equal(0, CliApp.Run(["generate", "--model", dir.File("xl.safetensors"), "--config", sdxl, .. common, "--out", dir.File("file")]));
        Assert.Equal(0, CliApp.Run(["generate", "--model", sdxl, .. common, "--out", dir.File("folder")]));
        using (var a = SKBitmap.Decode(dir.File("file/seed0.png")))
        using (var b = SKBitmap.Decode(dir.File("folder/seed0.png")))
            Assert.Equal(b.Pixels, a.Pixels);

        // profile: the scheduler comes with the configs (the folder's Euler), prompts from a file
        System.IO.File.WriteAllLines(dir.File("prompts.txt"), ["a red kite", "a blue boat"]);
        string[] profile = ["profile", "--model", dir.File("xl.safetensors"), "--steps", "3", "--conditions", "2", "--seeds", "1",
            "--prompts", dir.File("prompts.txt"), "--resolution", "4", "--guidance", "5"];
        Assert.Equal(0, CliApp.Run([.. profile, "--config", sdxl, "--out", dir.File("profile")]));
        Assert.True(System.IO.File.Exists(dir.File("profile/profile.json")));
        Assert.Equal(0, CliApp.Run("bench-cache", "--model", dir.File("xl.safetensors"), "--config", sdxl, "--prompts", dir.File("prompts.txt"),
            "--solver", "euler", "--steps", "3", "--batch", "1", "--latent", "4", "--repeats", "1", "--deepcache", "2", "--deltas", "1m",
            "--profile", dir.File("profile/profile.json"), "--out", dir.File("bench")));
        Assert.True(System.IO.File.Exists(dir.File("bench/bench-cache.md")));
        // without --config the file is read with SDXL 1.0 base's shapes, which the tiny model does not have: refused, nothing written
        Assert.NotEqual(0, CliApp.Run([.. profile, "--out", dir.File("refused")]));
        Assert.False(Directory.Exists(dir.File("refused")) && Directory.EnumerateFiles(dir.File("refused")).Any());
    }

    [Fact]
    public void A_checkpoint_of_unknown_family_is_refused_without_writing()
    {
        using var dir = new TempFolder();
        SafetensorsWriter.Write(dir.File("llm.safetensors"), [KeyValuePair.Create("transformer.h.0.mlp.weight", zeros(2, 2))]);
        Assert.NotEqual(0, CliApp.Run("generate", "--model", dir.File("llm.safetensors"), "--prompt", "a cat", "--steps", "2", "--out", dir.File("out")));
        Assert.True(NoPng(dir.Path));
    }

    [Fact]
    public void A_refiner_checkpoint_is_refused_without_writing()
    {
        using var dir = new TempFolder();
        SafetensorsWriter.Write(dir.File("refiner.safetensors"),
        [
            KeyValuePair.Create("conditioner.embedders.0.model.ln_final.weight", ones(4)),
            KeyValuePair.Create("model.diffusion_model.out.2.bias", zeros(4)),
        ]);
        Assert.NotEqual(0, CliApp.Run("generate", "--model", dir.File("refiner.safetensors"), "--prompt", "a cat", "--steps", "2", "--out", dir.File("out")));
        Assert.True(NoPng(dir.Path));
    }

    [Fact]
    public async Task A_truncated_file_prints_one_error_line_and_writes_nothing()
    {
        using var dir = new TempFolder();
        var bytes = System.IO.File.ReadAllBytes(File);
        System.IO.File.WriteAllBytes(dir.File("cut.safetensors"), bytes[..(bytes.Length / 2)]);
        // A real process, to see exactly what the user sees on stderr.
        var start = new ProcessStartInfo(Path.Combine(AppContext.BaseDirectory, "diffcache"))
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
        };
        foreach (var arg in new[] { "generate", "--model", dir.File("cut.safetensors"), "--config", Config, "--prompt", "a cat", "--steps", "2", "--out", dir.File("out") })
            start.ArgumentList.Add(arg);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        string stderr = await process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        await stdout;
        Assert.NotEqual(0, process.ExitCode);
        var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var line = Assert.Single(lines);
        Assert.StartsWith("error: ", line);
        Assert.Contains("cut.safetensors", line);
        Assert.True(NoPng(dir.Path));
    }

    [Fact]
    public void Config_needs_a_single_file_and_a_single_file_needs_a_prompt()
    {
        using var dir = new TempFolder();
        Assert.NotEqual(0, CliApp.Run("generate", "--model", Config, "--config", Config, "--prompt", "a cat", "--steps", "2", "--out", dir.File("a")));
        Assert.NotEqual(0, CliApp.Run("generate", "--model", File, "--config", Config, "--steps", "2", "--out", dir.File("b")));
        Assert.True(NoPng(dir.Path));
    }
}
