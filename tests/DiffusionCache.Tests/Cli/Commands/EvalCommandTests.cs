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

    [Theory]
    [InlineData("missing")]   // no such folder
    [InlineData("empty")]     // a folder without config.json
    [InlineData("unknown")]   // a config of no known metric network
    public void A_bad_second_classifier_is_one_error_before_any_work(string kind)
    {
        using var dir = new TempFolder();
        string folder = dir.File("second");
        if (kind != "missing") Directory.CreateDirectory(folder);
        if (kind == "unknown") File.WriteAllText(Path.Combine(folder, "config.json"), "{\"_class_name\": \"InceptionV3\"}");
        // The model folder is missing too: the second network is checked before the model is loaded.
        var (rc, error) = RuntimeOptionsTests.RunCapturingErrors("eval", "--second-classifier", folder, "--model", dir.File("no-model"),
            "--samples", "2", "--batch", "2", "--steps", "2", "--json", dir.File("eval.json"));
        Assert.Equal(1, rc);
        var line = Assert.Single(error.Split('\n'), l => l.Contains("--second-classifier", StringComparison.Ordinal));
        Assert.StartsWith("error: --second-classifier: ", line, StringComparison.Ordinal);
        Assert.Contains(kind == "unknown" ? "unknown metric network 'InceptionV3'" : "metric network not found", line, StringComparison.Ordinal);
        Assert.Contains("'--second-classifier none'", line, StringComparison.Ordinal);
        Assert.DoesNotContain("no-model", error, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", error, StringComparison.Ordinal);
        Assert.False(File.Exists(dir.File("eval.json")));
    }

    [Fact]
    public void The_second_classifier_defaults_to_the_shipped_resnet_and_none_skips_it()
    {
        var eval = DiffusionCache.Cli.CliApp.Create().Subcommands.Single(c => c.Name == "eval");
        var option = eval.Options.Single(o => o.Name == "--second-classifier");
        Assert.Contains("'none'", option.Description, StringComparison.Ordinal);
        var parse = DiffusionCache.Cli.CliApp.Create().Parse(["eval"]);
        Assert.Empty(parse.Errors);
        Assert.Equal(DiffusionCache.Evaluation.ClassifierFolder.SecondDefaultPath, parse.GetValue<string>("--second-classifier"));
        Assert.Empty(DiffusionCache.Cli.CliApp.Create().Parse(["eval", "--second-classifier", "none"]).Errors);
    }
}
