namespace DiffusionCache.Tests.TestSupport;

/// <summary>The shared golden data: ../shared/golden beside the repository root (the folder holding
/// DiffusionCache.sln). Missing data fails the test that needs it, loudly.</summary>
public static class Golden
{
    private static readonly Lazy<string> Root = new(FindRoot);

    public static string Folder => Root.Value;

    public static string Path(params string[] parts) => System.IO.Path.Combine([Folder, .. parts]);

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (!File.Exists(System.IO.Path.Combine(dir.FullName, "DiffusionCache.sln"))) continue;
            string golden = System.IO.Path.GetFullPath(System.IO.Path.Combine(dir.FullName, "..", "shared", "golden"));
            if (!Directory.Exists(golden)) throw new DirectoryNotFoundException($"golden data folder {golden} not found");
            return golden;
        }
        throw new DirectoryNotFoundException($"no DiffusionCache.sln above {AppContext.BaseDirectory}");
    }
}
