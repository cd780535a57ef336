namespace DiffusionCache.Cli.Commands;

/// <summary>Where the embedded model lives: <c>models/</c> of the checkout the CLI was built from, so that
/// <c>./diffcache generate</c> works from any working directory; a relative path from the working directory wins
/// when it exists.</summary>
internal static class DefaultPaths
{
    public static string Resolve(string relative)
    {
        if (Path.IsPathRooted(relative) || Directory.Exists(relative)) return relative;
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, relative);
            if (Directory.Exists(candidate)) return candidate;
        }
        return relative;
    }
}
