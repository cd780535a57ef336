namespace DiffusionCache.Formats;

/// <summary>A tensor source that serves a file's tensors under other names (a single-file checkpoint read through a
/// key map), so that errors can name the key as the file has it beside the name the model knows.</summary>
public interface IRenamedTensorSource : ITensorSource
{
    /// <summary>The file key that holds the tensor <paramref name="name"/>, or would hold it if it were there; null
    /// when none can.</summary>
    string? FileKey(string name);
}
