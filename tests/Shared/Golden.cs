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
        string golden = System.IO.Path.GetFullPath(System.IO.Path.Combine(Repository.Root, "..", "shared", "golden"));
        if (!Directory.Exists(golden)) throw new DirectoryNotFoundException($"golden data folder {golden} not found");
        return golden;
    }
}

/// <summary>The checkout the tests were built from: the folder holding DiffusionCache.sln.</summary>
public static class Repository
{
    private static readonly Lazy<string> Found = new(() =>
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(System.IO.Path.Combine(dir.FullName, "DiffusionCache.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException($"no DiffusionCache.sln above {AppContext.BaseDirectory}");
    });

    public static string Root => Found.Value;

    public static string Path(params string[] parts) => System.IO.Path.Combine([Root, .. parts]);
}
