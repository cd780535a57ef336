using DiffusionCache.Formats.Safetensors;
using static TorchSharp.torch;

namespace DiffusionCache.Formats;

/// <summary>A tensor source without the tensors a loader knows to be irrelevant (e.g. the <c>position_ids</c>
/// buffer older transformers versions saved in CLIP checkpoints), so strict loading stays strict about the rest.
/// File keys of a renamed source stay visible through it.</summary>
public sealed class FilteredTensorSource(ITensorSource inner, Func<string, bool> keep) : IRenamedTensorSource
{
    private readonly IReadOnlyCollection<string> _names = inner.Names.Where(keep).ToArray();

    public string Description => inner.Description;
    public IReadOnlyCollection<string> Names => _names;
    public SafetensorsEntry Entry(string name) => keep(name) ? inner.Entry(name) : throw new KeyNotFoundException(name);
    public Tensor Load(string name, ScalarType? dtype = null, Device? device = null) =>
        keep(name) ? inner.Load(name, dtype, device) : throw new KeyNotFoundException(name);
    public string? FileKey(string name) => (inner as IRenamedTensorSource)?.FileKey(name);
}
