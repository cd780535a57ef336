namespace DiffusionCache.Formats;

/// <summary>Writes files so that a reader never sees a partial one: into a temporary file beside the target, then
/// renamed over it. On failure the temporary file is removed and the target is untouched.</summary>
public static class AtomicFile
{
    /// <summary>Writes <paramref name="path"/> atomically: <paramref name="write"/> fills a temporary file in the same
    /// folder (created if missing), which is flushed to disk and then renamed over <paramref name="path"/>. Whatever
    /// <paramref name="write"/> or the file system throws propagates, with the temporary file deleted.</summary>
    /// <param name="path">The file to create or replace.</param>
    /// <param name="write">Writes the whole content; it must not close or dispose the stream.</param>
    public static void Write(string path, Action<Stream> write)
    {
        string full = Path.GetFullPath(path);
        string? dir = Path.GetDirectoryName(full);
        if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
        string temp = Path.Combine(dir ?? ".", $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(temp); } catch (IOException) { }
            throw;
        }
    }

    /// <summary>Fails now, with the reason, if <paramref name="path"/> could not be written later (a missing folder is
    /// created; a file that is a folder, a read-only folder, a folder that is a file are errors): long jobs check their
    /// outputs before the work, not after it.</summary>
    public static void EnsureWritable(string path)
    {
        string full = Path.GetFullPath(path);
        if (Directory.Exists(full)) throw new DiffusionCacheException($"{path}: is a folder, expected a file to write");
        string dir = Path.GetDirectoryName(full) ?? ".";
        try
        {
            Directory.CreateDirectory(dir);
            string probe = Path.Combine(dir, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.probe");
            using (new FileStream(probe, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.DeleteOnClose)) { }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DiffusionCacheException($"{path}: cannot be written ({e.Message})", e);
        }
    }

    /// <summary><see cref="Write"/> with <paramref name="text"/> as UTF-8 without a byte order mark.</summary>
    /// <param name="path">The file to create or replace.</param>
    /// <param name="text">The whole content of the file.</param>
    public static void WriteAllText(string path, string text) =>
        Write(path, s => { using var w = new StreamWriter(s, leaveOpen: true); w.Write(text); });
}
