using System.Text.Json;
using DiffusionCache.Cli;
using DiffusionCache.Tests.TestSupport;

namespace DiffusionCache.Tests.Cli.Commands;

/// <summary><c>diffcache bench-dtype</c> on the embedded model: one row per compute type, float32 the reference,
/// bf16 close to it but not identical; bad lists fail before any work.</summary>
public sealed class BenchDtypeCommandTests
{
    [Fact]
    public void Compares_bf16_with_fp32_on_the_same_seeds()
    {
        using var dir = new TempFolder();
        int rc = CliApp.Run("bench-dtype", "--model", "fashion", "--steps", "1", "--seeds", "1", "--json", dir.File("dtype.json"));
        Assert.Equal(0, rc);
        using var json = JsonDocument.Parse(File.ReadAllText(dir.File("dtype.json")));
        var rows = json.RootElement.GetProperty("rows").EnumerateArray().ToList();
        Assert.Equal(["fp32", "bf16"], rows.Select(r => r.GetProperty("dtype").GetString()));
        Assert.Equal(1.0, rows[0].GetProperty("slowdown_vs_reference").GetDouble(), 12);
        Assert.Equal(JsonValueKind.Null, rows[0].GetProperty("psnr_db_mean").ValueKind);
        double psnr = rows[1].GetProperty("psnr_db_mean").GetDouble();
        Assert.InRange(psnr, 20, 200);   // bf16 rounds: close to fp32, not bit-identical
        Assert.True(rows[1].GetProperty("step_median_seconds").GetDouble() > 0);
    }

    [Theory]
    [InlineData("fp32")]
    [InlineData("fp32,fp32")]
    [InlineData("fp32,fp8")]
    [InlineData("fp32,fp16")]
    public void Refuses_a_bad_list_before_any_work(string list)
    {
        using var dir = new TempFolder();
        Assert.NotEqual(0, CliApp.Run("bench-dtype", "--dtypes", list, "--json", dir.File("dtype.json")));
        Assert.False(File.Exists(dir.File("dtype.json")));
    }
}
