using System.Diagnostics;
using System.IO.Compression;
using System.Xml.Linq;
using DiffusionCache.Tests.TestSupport;

namespace DiffusionCache.Tests.Packaging;

/// <summary>The library package as `dotnet pack` makes it from this build: it must leave the native backend to the
/// application (TorchSharp, never TorchSharp-cpu or libtorch), carry the Debian libstdc++ fix as buildTransitive
/// targets, and ship its XML documentation, README and licence.</summary>
public sealed class LibraryPackageTests
{
#if DEBUG
    private const string Configuration = "Debug";
#else
    private const string Configuration = "Release";
#endif

    private static readonly Lazy<(XDocument Nuspec, string[] Files)> Packed = new(Pack);

    private static (XDocument, string[]) Pack()
    {
        using var output = new TempFolder();
        var start = new ProcessStartInfo("dotnet",
            ["pack", Repository.Path("src", "DiffusionCache", "DiffusionCache.csproj"), "-c", Configuration, "--no-build", "--nologo",
             "-o", output.Path, "-p:VersionSuffix=test"])
        { RedirectStandardOutput = true, RedirectStandardError = true };
        using var process = Process.Start(start)!;
        string log = process.StandardOutput.ReadToEnd() + process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, $"dotnet pack failed:\n{log}");
        string nupkg = Directory.GetFiles(output.Path, "DiffusionCache.*.nupkg").Single(f => !f.EndsWith(".snupkg", StringComparison.Ordinal));
        using var zip = ZipFile.OpenRead(nupkg);
        using var nuspec = zip.GetEntry("DiffusionCache.nuspec")!.Open();
        return (XDocument.Load(nuspec), zip.Entries.Select(e => e.FullName).ToArray());
    }

    private static XNamespace Ns => Packed.Value.Nuspec.Root!.Name.Namespace;

    private static string[] Dependencies() =>
        Packed.Value.Nuspec.Descendants(Ns + "dependency").Select(d => (string)d.Attribute("id")!).ToArray();

    [Fact]
    public void Depends_on_managed_TorchSharp_only_not_on_a_native_backend()
    {
        var ids = Dependencies();
        Assert.Contains("TorchSharp", ids);
        Assert.DoesNotContain(ids, id => id.StartsWith("TorchSharp-", StringComparison.OrdinalIgnoreCase)
            || id.StartsWith("libtorch", StringComparison.OrdinalIgnoreCase));
    }

    [Fact]
    public void Carries_the_libstdcxx_fix_as_buildTransitive_targets_named_after_the_package()
    {
        Assert.Contains("buildTransitive/DiffusionCache.targets", Packed.Value.Files);
    }

    [Fact]
    public void Ships_xml_documentation_readme_and_licence()
    {
        Assert.Contains("lib/net10.0/DiffusionCache.dll", Packed.Value.Files);
        Assert.Contains("lib/net10.0/DiffusionCache.xml", Packed.Value.Files);
        Assert.Contains("README.md", Packed.Value.Files);
        var metadata = Packed.Value.Nuspec.Root!.Element(Ns + "metadata")!;
        Assert.Equal("README.md", (string?)metadata.Element(Ns + "readme"));
        Assert.Equal("MIT", (string?)metadata.Element(Ns + "license"));
        Assert.EndsWith("-test", (string?)metadata.Element(Ns + "version"));
    }
}
