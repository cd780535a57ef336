using DiffusionCache.Formats.Safetensors;
using static TorchSharp.torch;

namespace DiffusionCache.Formats;

/// <summary>A tensor source without the tensors a loader knows to be irrelevant (e.g. the <c>position_ids</c>
/// buffer older transformers versions saved in CLIP checkpoints), so strict loading stays strict about the rest.
/// File keys of a renamed source stay visible through it.</summary>
/// <param name="inner">The source to filter; it stays owned by the caller.</param>
/// <param name="keep">True for the names to serve; evaluated once per name for <see cref="Names"/> and again on
/// every <see cref="Entry"/> and <see cref="Load"/>.</param>
public sealed class FilteredTensorSource(ITensorSource inner, Func<string, bool> keep) : IRenamedTensorSource
{
    private readonly IReadOnlyCollection<string> _names = inner.Names.Where(keep).ToArray();

    /// <summary>The inner source's description.</summary>
    public string Description => inner.Description;

    /// <summary>The inner source's names that pass the filter.</summary>
    public IReadOnlyCollection<string> Names => _names;

    /// <inheritdoc />
    /// <exception cref="KeyNotFoundException"><paramref name="name"/> is filtered out.</exception>
    public SafetensorsEntry Entry(string name) => keep(name) ? inner.Entry(name) : throw new KeyNotFoundException(name);
    /// <inheritdoc />
    /// <exception cref="KeyNotFoundException"><paramref name="name"/> is filtered out.</exception>
    public Tensor Load(string name, ScalarType? dtype = null, Device? device = null) =>
        keep(name) ? inner.Load(name, dtype, device) : throw new KeyNotFoundException(name);
    /// <summary>The inner source's file key for <paramref name="name"/> when it is a renamed source; otherwise null
    /// (its names are its file keys).</summary>
    public string? FileKey(string name) => (inner as IRenamedTensorSource)?.FileKey(name);
}
