using DiffusionCache.Formats.Safetensors;
using static TorchSharp.torch;

namespace DiffusionCache.Formats;

/// <summary>Where named tensors come from (a safetensors file, a sharded checkpoint, ...).</summary>
public interface ITensorSource
{
    /// <summary>What to name in errors: the file or folder.</summary>
    string Description { get; }
    /// <summary>The name of every tensor the source holds, under the names the model knows.</summary>
    IReadOnlyCollection<string> Names { get; }

    /// <summary>Where the tensor <paramref name="name"/> lies and what it is (type, shape, byte range), without
    /// reading its data. Throws when there is no such tensor (which exception depends on the source).</summary>
    SafetensorsEntry Entry(string name);

    /// <summary>Reads the tensor <paramref name="name"/> into new memory that the caller owns and disposes.</summary>
    /// <param name="name">One of <see cref="Names"/>; any other name throws.</param>
    /// <param name="dtype">The type to convert to; null keeps the stored type.</param>
    /// <param name="device">The device to move to; null leaves the tensor on the CPU.</param>
    Tensor Load(string name, ScalarType? dtype = null, Device? device = null);
}
