using DiffusionCache.Cli;
using DiffusionCache.Runtime;

namespace DiffusionCache.Tests.Runtime;

public sealed class BuildInfoTests
{
    [Fact]
    public void Names_version_commit_and_libtorch()
    {
        Assert.Matches(@"^\d+\.\d+\.\d+", BuildInfo.Version);
        Assert.Matches("^[0-9a-f]{7,40}$", BuildInfo.Commit);   // built from a git checkout
        Assert.StartsWith("2.", BuildInfo.LibTorchVersion, StringComparison.Ordinal);
        Assert.Equal("0.107.0", BuildInfo.TorchSharpVersion);
        Assert.Contains($"libtorch {BuildInfo.LibTorchVersion}", BuildInfo.Describe(), StringComparison.Ordinal);
    }

    [Fact]
    public void The_cli_version_option_prints_it()
    {
        var output = new StringWriter();
        var previous = Console.Out;
        Console.SetOut(output);
        try
        {
            Assert.Equal(0, CliApp.Run("--version"));
        }
        finally
        {
            Console.SetOut(previous);
        }
        Assert.Contains(BuildInfo.Describe(), output.ToString(), StringComparison.Ordinal);
    }
}
