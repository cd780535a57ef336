using System.Text.Json;
using DiffusionCache.Cli;
using DiffusionCache.Tests.TestSupport;

namespace DiffusionCache.Tests.Cli.Commands;

/// <summary><c>diffcache bench</c> under the runtime options: the U-Net and its random inputs in bfloat16, saved and
/// reloaded in bfloat16 with <c>--load</c>, and the report says so.</summary>
public sealed class BenchCommandTests
{
    [Fact]
    public void Times_a_bf16_forward_pass_and_reports_the_type()
    {
        using var dir = new TempFolder();
        Assert.Equal(0, CliApp.Run("bench", "--unet-config", Golden.Path("deepcache", "models", "tiny-sd-unet"), "--latent", "8", "--batch", "2",
            "--runs", "2", "--warmup", "1", "--load", "--dtype", "bf16", "--device", "cpu", "--json", dir.File("bench.json")));
        using var json = JsonDocument.Parse(File.ReadAllText(dir.File("bench.json")));
        var root = json.RootElement;
        Assert.Equal("bf16", root.GetProperty("dtype").GetString());
        Assert.Equal("cpu", root.GetProperty("device").GetString());
        Assert.True(root.GetProperty("median_ms").GetDouble() > 0);
        Assert.True(double.IsFinite(root.GetProperty("load_peak_over_weights").GetDouble()));
    }
}
