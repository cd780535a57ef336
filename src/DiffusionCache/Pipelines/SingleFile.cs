using DiffusionCache.Formats.Checkpoints;

namespace DiffusionCache.Pipelines;

/// <summary>What the Stable Diffusion and SDXL single-file loaders share: the checks before a file is opened, and the
/// notes about what loading it left out.</summary>
internal static class SingleFile
{
    /// <summary>Opens <paramref name="file"/> as a single-file checkpoint after refusing what cannot be one: a weights
    /// variant (a folder option), a folder, a pickled <c>.ckpt</c>/<c>.pt</c> (loading those can run code).</summary>
    public static LdmCheckpoint Open(string file, PipelineLoadOptions options)
    {
        ArgumentNullException.ThrowIfNull(file);
        if (options.Variant is not null)
            throw new DiffusionCacheException($"{file}: a weights variant ('{options.Variant}') applies to diffusers folders, not to a single-file checkpoint");
        if (Directory.Exists(file)) throw new DiffusionCacheException($"{file} is a folder, not a single-file checkpoint");
        if (file.EndsWith(".ckpt", StringComparison.OrdinalIgnoreCase) || file.EndsWith(".pt", StringComparison.OrdinalIgnoreCase))
            throw new DiffusionCacheException($"{file}: pickled checkpoints are not read (they can run code); convert it to .safetensors");
        return LdmCheckpoint.Open(file);
    }

    /// <summary>The pipeline's notes: the family and where its configs came from, and the tensors not loaded.</summary>
    public static List<string> Notes(LdmCheckpoint checkpoint, SingleFileConfigs configs)
    {
        var notes = new List<string> { $"{LdmCheckpoint.Name(checkpoint.Family)} single-file checkpoint; configs: {configs.Source}" };
        if (checkpoint.IgnoredKeys.Count > 0)
            notes.Add($"{checkpoint.IgnoredKeys.Count} {(checkpoint.IgnoredKeys.Count == 1 ? "tensor" : "tensors")} of the file {(checkpoint.IgnoredKeys.Count == 1 ? "is not a weight" : "are not weights")} the pipeline uses " +
                $"(training buffers, the denoiser's sigmas, an EMA copy): not loaded");
        return notes;
    }
}
