namespace DiffusionCache.Tests.TestSupport;

/// <summary>Copies a folder tree (golden models are read-only; the copies are writable, for tests that break them).</summary>
public static class FolderCopy
{
    public static void Copy(string from, string to)
    {
        foreach (var dir in Directory.GetDirectories(from, "*", SearchOption.AllDirectories))
            Directory.CreateDirectory(dir.Replace(from, to, StringComparison.Ordinal));
        foreach (var file in Directory.GetFiles(from, "*", SearchOption.AllDirectories))
        {
            string target = file.Replace(from, to, StringComparison.Ordinal);
            File.Copy(file, target, overwrite: true);
            File.SetAttributes(target, FileAttributes.Normal);
        }
    }
}
