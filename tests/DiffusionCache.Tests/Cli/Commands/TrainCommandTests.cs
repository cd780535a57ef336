using DiffusionCache.Tests.TestSupport;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Cli.Commands;

/// <summary><c>diffcache train vae|unet|classifier</c> take the runtime options: valid ones pass and the job goes on
/// to its own checks; a type other than fp32 is refused, naming the option and value, before any work (the cases of
/// <see cref="RuntimeOptionsTests"/> cover every bad value).</summary>
public sealed class TrainCommandTests
{
    [Fact]
    public void Valid_options_pass_and_the_job_goes_on_to_its_own_checks()
    {
        using var dir = new TempFolder();
        Directory.CreateDirectory(dir.File("model"));   // no vae/ in it: train unet stops there
        var (rc, error) = RuntimeOptionsTests.RunCapturingErrors("train", "unet", "--steps", "1", "--model", dir.File("model"),
            "--checkpoints", dir.File("ck"), "--device", "cpu", "--dtype", "fp32", "--threads", get_num_threads().ToString(System.Globalization.CultureInfo.InvariantCulture));
        Assert.NotEqual(0, rc);
        Assert.Contains("run 'diffcache train vae' first", error);
        Assert.False(Directory.Exists(dir.File("ck")));
    }

    [Theory]
    [InlineData("vae", "bf16")]
    [InlineData("classifier", "bfloat16")]
    [InlineData("unet", "fp16")]
    public void Training_in_half_precision_is_refused_naming_the_option(string component, string dtype)
    {
        using var dir = new TempFolder();
        var (rc, error) = RuntimeOptionsTests.RunCapturingErrors("train", component, "--dtype", dtype, "--model", dir.File("model"), "--checkpoints", dir.File("ck"));
        Assert.NotEqual(0, rc);
        Assert.Contains($"error: --dtype {dtype}: this command runs in float32 only (training keeps float32 weights", error);
        Assert.Empty(Directory.EnumerateFileSystemEntries(dir.Path));
    }
}
