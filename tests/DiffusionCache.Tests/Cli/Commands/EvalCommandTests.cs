using DiffusionCache.Tests.TestSupport;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Cli.Commands;

/// <summary><c>diffcache eval</c> takes the runtime options: valid ones pass and the job goes on to its own checks
/// (a full evaluation scores the whole Fashion-MNIST test set, too slow for a unit test); the bad values are in
/// <see cref="RuntimeOptionsTests"/>.</summary>
public sealed class EvalCommandTests
{
    [Fact]
    public void Valid_options_pass_and_the_job_goes_on_to_its_own_checks()
    {
        using var dir = new TempFolder();
        var (rc, error) = RuntimeOptionsTests.RunCapturingErrors("eval", "--classifier", dir.File("no-classifier"), "--samples", "2", "--batch", "2",
            "--steps", "2", "--json", dir.File("eval.json"), "--device", "cpu", "--dtype", "bf16",
            "--threads", get_num_threads().ToString(System.Globalization.CultureInfo.InvariantCulture));
        Assert.NotEqual(0, rc);
        Assert.Contains("metric network not found", error);
        Assert.False(File.Exists(dir.File("eval.json")));
    }
}
