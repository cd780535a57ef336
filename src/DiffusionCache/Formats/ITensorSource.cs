using DiffusionCache.Formats.Safetensors;
using static TorchSharp.torch;

namespace DiffusionCache.Formats;

/// <summary>Where named tensors come from (a safetensors file, a sharded checkpoint, ...).</summary>
public interface ITensorSource
{
    /// <summary>What to name in errors: the file or folder.</summary>
    string Description { get; }
    IReadOnlyCollection<string> Names { get; }
    SafetensorsEntry Entry(string name);
    Tensor Load(string name, ScalarType? dtype = null, Device? device = null);
}
