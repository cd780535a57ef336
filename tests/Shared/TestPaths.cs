namespace DiffusionCache.Tests.Shared;

/// <summary>Locates the checkout and the golden reference data (<c>../shared/golden</c> beside the checkout).</summary>
public static class TestPaths
{
    public static string RepoRoot { get; } = FindRepoRoot();

    public static string Golden { get; } = Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared", "golden"));

    public static string GoldenKind(string kind)
    {
        string dir = Path.Combine(Golden, kind);
        if (!Directory.Exists(dir))
            throw new DirectoryNotFoundException($"golden data not found at {dir}: the shared/ folder must sit beside the checkout");
        return dir;
    }

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "DiffusionCache.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException($"no DiffusionCache.sln above {AppContext.BaseDirectory}");
    }
}
