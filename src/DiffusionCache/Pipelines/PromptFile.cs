namespace DiffusionCache.Pipelines;

/// <summary>A prompt file: one prompt per line; blank lines are skipped.</summary>
public static class PromptFile
{
    /// <summary>The prompts of the file at <paramref name="path"/>, in order, each line trimmed.</summary>
    /// <exception cref="DiffusionCacheException">The file is missing or holds no prompt.</exception>
    public static IReadOnlyList<string> Read(string path)
    {
        if (!File.Exists(path)) throw new DiffusionCacheException($"{path}: prompt file not found");
        var prompts = File.ReadAllLines(path).Select(l => l.Trim()).Where(l => l.Length > 0).ToList();
        return prompts.Count > 0 ? prompts : throw new DiffusionCacheException($"{path}: no prompts (one per line)");
    }
}
