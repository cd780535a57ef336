using TorchSharp;

namespace DiffusionCache.Formats.Safetensors;

/// <summary>Raw access to the memory of a contiguous CPU tensor in pieces, because
/// <see cref="torch.Tensor.bytes"/> refuses tensors of more than int.MaxValue bytes.</summary>
internal static class TensorMemory
{
    public delegate void ChunkAction(Span<byte> chunk, long offset);

    /// <summary>1 GiB: few pieces for big tensors, and far from the int limit of a span.</summary>
    public const int DefaultChunkBytes = 1 << 30;

    /// <summary>Calls <paramref name="action"/> on consecutive pieces of the tensor's bytes, in order, each at
    /// most <paramref name="chunkBytes"/> long (rounded down to whole elements, at least one element).</summary>
    public static void ForEachChunk(torch.Tensor tensor, int chunkBytes, ChunkAction action)
    {
        long elementSize = tensor.ElementSize;
        long count = tensor.NumberOfElements;
        if (count == 0) return;
        if (count * elementSize <= chunkBytes)
        {
            action(tensor.bytes, 0);
            return;
        }
        // Narrowed views of the flattened tensor share its memory; their data pointers include the offset.
        long perChunk = Math.Max(1, chunkBytes / elementSize);
        using var flat = tensor.view(-1);
        for (long start = 0; start < count; start += perChunk)
        {
            using var part = flat.narrow(0, start, Math.Min(perChunk, count - start));
            action(part.bytes, start * elementSize);
        }
    }
}
