using DiffusionCache.Caching.BlockCaching;
using DiffusionCache.Cli;
using DiffusionCache.Tests.TestSupport;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Cli.Commands;

/// <summary><c>diffcache train scaleshift</c> under the runtime options: the frozen U-Net in bfloat16, the adjustment
/// in float32 beside it, on a two-step schedule of the embedded model (profiled and built first) to stay fast.</summary>
public sealed class TrainScaleShiftCommandTests
{
    [Fact]
    public void Distils_an_adjustment_against_a_bf16_unet()
    {
        using var dir = new TempFolder();
        string model = Repository.Path("models", "fashion-ldm");
        Assert.Equal(0, CliApp.Run("profile", "--model", model, "--steps", "2", "--conditions", "1", "--seeds", "1", "--out", dir.File("profile")));
        Assert.Equal(0, CliApp.Run("schedule", "--profile", Path.Combine(dir.File("profile"), "profile.json"), "--delta", "100", "--out", dir.File("schedule.json")));
        Assert.Equal(0, CliApp.Run("train", "scaleshift", "--model", model, "--solver", "ddim", "--denoising-steps", "2", "--schedule", dir.File("schedule.json"),
            "--steps", "1", "--batch", "1", "--checkpoints", dir.File("ck"), "--out", dir.File("adjustment.safetensors"),
            "--dtype", "bf16", "--device", "cpu", "--threads", get_num_threads().ToString(System.Globalization.CultureInfo.InvariantCulture)));
        using var adjustment = ScaleShiftAdjustment.Load(dir.File("adjustment.safetensors"));
        Assert.Equal("bf16", adjustment.Description["unet_dtype"]);
        Assert.All(adjustment.parameters(), p =>
        {
            Assert.Equal(ScalarType.Float32, p.dtype);
            Assert.True(p.isfinite().all().item<bool>());
        });
    }
}
