using System.Text.Json;
using DiffusionCache.Cli;
using DiffusionCache.Tests.TestSupport;

namespace DiffusionCache.Tests.Cli.Commands;

/// <summary><c>diffcache bench-cache</c> end to end on a tiny U-Net folder: every configuration is a row of the JSON
/// with the fields the issue names, fidelity and MAC figures are consistent with what each configuration does, and
/// bad input fails before any file is written.</summary>
public sealed class BenchCacheCommandTests
{
    private static string TinyUNet => Golden.Path("deepcache", "models", "tiny-sd-unet");

    [Fact]
    public void Writes_one_row_per_configuration_with_speed_mac_and_fidelity()
    {
        using var dir = new TempFolder();
        int rc = CliApp.Run("bench-cache", "--model", TinyUNet, "--steps", "6", "--batch", "1", "--repeats", "1",
            "--deepcache", "2,3", "--deltas", "0.01,100", "--out", dir.Path, "--json", dir.File("rows.json"));
        Assert.Equal(0, rc);

        using var json = JsonDocument.Parse(File.ReadAllText(dir.File("rows.json")));
        var rows = json.RootElement.EnumerateArray().ToList();
        Assert.Equal(["no cache", "3 steps", "2 steps", "DeepCache N=2 branch 0", "DeepCache N=3 branch 0", "BlockCache δ=0.01", "BlockCache δ=100"],
            rows.Select(r => r.GetProperty("name").GetString()));
        foreach (var row in rows)
        {
            Assert.True(row.GetProperty("measured_speedup").GetDouble() > 0);
            Assert.True(row.GetProperty("mac_speedup").GetDouble() >= 1);
            Assert.True(row.TryGetProperty("psnr", out _));
        }
        var noCache = rows[0];
        Assert.Equal(1.0, noCache.GetProperty("measured_speedup").GetDouble(), 12);
        Assert.Equal(JsonValueKind.Null, noCache.GetProperty("psnr").ValueKind);   // identical to itself
        Assert.Equal(2.0, rows[1].GetProperty("mac_speedup").GetDouble(), 12);
        // δ = 100 keeps every cached block for all steps after the first: the largest MAC speedup of the Block
        // Caching rows, and a result that differs from uncached; a tiny δ recomputes nearly every step.
        Assert.True(rows[6].GetProperty("mac_speedup").GetDouble() > rows[5].GetProperty("mac_speedup").GetDouble());
        Assert.True(rows[6].GetProperty("skipped_fraction").GetDouble() > 0.5);
        Assert.True(rows[6].GetProperty("psnr").GetDouble() < 200);
        Assert.True(File.Exists(dir.File("bench-cache.md")));
        Assert.True(File.Exists(dir.File("speed-vs-delta.png")));
    }

    [Fact]
    public void Thresholds_can_be_multiples_of_the_profiles_median_change()
    {
        using var dir = new TempFolder();
        Assert.Equal(0, CliApp.Run("bench-cache", "--model", TinyUNet, "--steps", "4", "--batch", "1", "--repeats", "1", "--deepcache", "2",
            "--deltas", "1m,1000", "--profile-conditions", "1", "--out", dir.Path, "--json", dir.File("rows.json")));
        using var json = JsonDocument.Parse(File.ReadAllText(dir.File("rows.json")));
        var deltas = json.RootElement.EnumerateArray().Where(r => r.GetProperty("name").GetString()!.StartsWith("BlockCache", StringComparison.Ordinal))
            .Select(r => r.GetProperty("delta").GetDouble()).ToList();
        Assert.Equal(2, deltas.Count);
        Assert.True(deltas[0] > 0 && deltas[0] < 1000);   // the median change of this profile, not 1
        Assert.Equal(1000, deltas[1]);
    }

    [Fact]
    public void Runs_in_bf16_with_finite_figures_and_half_the_cache_memory()
    {
        using var dir = new TempFolder();
        List<JsonElement> Rows(string name, params string[] runtime)
        {
            Assert.Equal(0, CliApp.Run(["bench-cache", "--model", TinyUNet, "--steps", "4", "--batch", "1", "--repeats", "1", "--deepcache", "2",
                "--deltas", "100", "--profile-conditions", "1", "--out", dir.File(name), "--json", dir.File(name + ".json"), .. runtime]));
            using var json = JsonDocument.Parse(File.ReadAllText(dir.File(name + ".json")));
            return json.RootElement.EnumerateArray().Select(r => r.Clone()).ToList();
        }
        var fp32 = Rows("fp32");
        var bf16 = Rows("bf16", "--dtype", "bf16", "--device", "cpu");
        Assert.Equal(fp32.Select(r => r.GetProperty("name").GetString()), bf16.Select(r => r.GetProperty("name").GetString()));
        foreach (var row in bf16)
        {
            Assert.True(row.GetProperty("latency_ms_per_image").GetDouble() > 0);
            Assert.True(row.GetProperty("psnr").ValueKind == JsonValueKind.Null || double.IsFinite(row.GetProperty("psnr").GetDouble()));
            Assert.True(double.IsFinite(row.GetProperty("ssim").GetDouble()));
        }
        // The caches hold the blocks' outputs in the model's type: bfloat16 halves them.
        var deepcache = (fp32.Single(r => r.GetProperty("kind").GetString() == "deepcache"), bf16.Single(r => r.GetProperty("kind").GetString() == "deepcache"));
        Assert.Equal(0.5, deepcache.Item2.GetProperty("cache_mb").GetDouble() / deepcache.Item1.GetProperty("cache_mb").GetDouble(), 6);
        Assert.Contains("bf16 on cpu", File.ReadAllText(Path.Combine(dir.File("bf16"), "bench-cache.md")));
    }

    [Theory]
    [InlineData("--deltas", "m")]
    [InlineData("--profile-conditions", "0")]
    [InlineData("--deepcache", "0")]
    [InlineData("--deltas", "0")]
    [InlineData("--branch", "12")]
    [InlineData("--steps", "0")]
    public void Bad_input_fails_before_any_work(string option, string value)
    {
        using var dir = new TempFolder();
        int rc = CliApp.Run("bench-cache", "--model", TinyUNet, "--steps", "6", option, value, "--out", dir.Path);
        Assert.NotEqual(0, rc);
        Assert.Empty(Directory.EnumerateFileSystemEntries(dir.Path));
    }
}
