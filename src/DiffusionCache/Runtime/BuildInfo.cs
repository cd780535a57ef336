using System.Reflection;
using TorchSharp;

namespace DiffusionCache.Runtime;

/// <summary>What produced a result: this library's version and commit (the SDK stamps the commit into the
/// informational version at build time), TorchSharp's and libtorch's versions. Generated files carry it.</summary>
public static class BuildInfo
{
    private static readonly string Informational =
        typeof(BuildInfo).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "0.0.0";

    /// <summary>The version without the commit, e.g. 1.0.0.</summary>
    public static string Version => Informational.Split('+')[0];
    /// <summary>The commit the library was built from, or "unknown" outside a git checkout.</summary>
    public static string Commit => Informational.Contains('+', StringComparison.Ordinal) ? Informational.Split('+')[1] : "unknown";
    /// <summary>The loaded TorchSharp assembly's version as major.minor.patch (e.g. 0.107.0), or "unknown".</summary>
    public static string TorchSharpVersion => typeof(torch).Assembly.GetName().Version?.ToString(3) ?? "unknown";
    /// <summary>The native libtorch version (<c>torch.__version__</c>). Reading it loads libtorch.</summary>
    public static string LibTorchVersion => torch.__version__;

    /// <summary>One line: "DiffusionCache 1.0.0 (commit 1234abc, TorchSharp 0.107.0, libtorch 2.10.0.0)".</summary>
    public static string Describe() =>
        $"DiffusionCache {Version} (commit {Commit[..Math.Min(12, Commit.Length)]}, TorchSharp {TorchSharpVersion}, libtorch {LibTorchVersion})";
}
