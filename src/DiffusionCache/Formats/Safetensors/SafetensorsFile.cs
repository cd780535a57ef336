using System.Buffers.Binary;
using Microsoft.Win32.SafeHandles;
using TorchSharp;

namespace DiffusionCache.Formats.Safetensors;

/// <summary>Where one tensor lies in a safetensors file. Offsets are relative to the start of the data section.</summary>
/// <param name="Name">The tensor's name (for a renamed view, the name it is served under).</param>
/// <param name="DType">The stored element type.</param>
/// <param name="Shape">The dimensions; empty for a scalar. Do not modify: the array is shared.</param>
/// <param name="Begin">Offset of the first byte in the data section.</param>
/// <param name="End">Offset just past the last byte (exclusive).</param>
public sealed record SafetensorsEntry(string Name, SafetensorsDType DType, long[] Shape, long Begin, long End)
{
    /// <summary>Bytes of data: <see cref="End"/> - <see cref="Begin"/>.</summary>
    public long ByteLength => End - Begin;

    /// <summary>Number of elements: the product of <see cref="Shape"/> (1 for a scalar).</summary>
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);
}

/// <summary>
/// Reads a safetensors file (8-byte little-endian header length, JSON header, raw little-endian data).
/// The header is validated completely on open, so every later read is in range; tensor data is streamed from
/// the file straight into the tensor's own memory (one copy, no mapping kept resident). Malformed input of any
/// kind is reported as a <see cref="SafetensorsException"/> naming the file and, where it applies, the tensor.
/// </summary>
public sealed class SafetensorsFile : IDisposable
{
    /// <summary>Headers larger than this are refused as absurd (real ones are kilobytes to a few megabytes); the
    /// reference crate's limit, so the writer never produces a file the reference refuses.</summary>
    public const long MaxHeaderBytes = 100_000_000;

    private readonly SafeFileHandle _handle;
    private readonly Dictionary<string, SafetensorsEntry> _entries;

    /// <summary>The file, as the path given to <see cref="Open"/>.</summary>
    public string FilePath { get; }

    /// <summary>The header's <c>__metadata__</c> string pairs (e.g. <c>format</c> = <c>pt</c>); empty when there
    /// are none.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }
    /// <summary>Tensors in the order of their data offsets.</summary>
    public IReadOnlyList<SafetensorsEntry> Entries { get; }
    /// <summary>Offset of the data section from the start of the file: 8 + the header length. Entry offsets are
    /// relative to it.</summary>
    public long DataStart { get; }

    private SafetensorsFile(string path, SafeFileHandle handle, long dataStart,
        Dictionary<string, SafetensorsEntry> entries, Dictionary<string, string> metadata)
    {
        FilePath = path;
        _handle = handle;
        DataStart = dataStart;
        _entries = entries;
        Metadata = metadata;
        Entries = entries.Values.OrderBy(e => e.Begin).ThenBy(e => e.End).ToArray();
    }

    /// <summary>Opens <paramref name="path"/> for reading and validates its whole header (types, shapes, offsets that
    /// tile the data section exactly). The file stays open, shared for reading, until disposed. Throws
    /// <see cref="SafetensorsException"/> for a missing, unreadable, truncated or malformed file.</summary>
    public static SafetensorsFile Open(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path)) throw new SafetensorsException(path, null, "file not found");
        SafeFileHandle handle;
        try
        {
            handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new SafetensorsException(path, null, $"cannot open: {e.Message}", e);
        }
        try
        {
            long length = RandomAccess.GetLength(handle);
            if (length < 8) throw new SafetensorsException(path, null, $"truncated: {length} bytes, shorter than the 8-byte header length");
            Span<byte> prefix = stackalloc byte[8];
            ReadExactly(handle, prefix, 0, path, null);
            ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
            if (headerLength > MaxHeaderBytes)
                throw new SafetensorsException(path, null, $"header length {headerLength} is absurd (limit {MaxHeaderBytes})");
            if ((long)headerLength > length - 8)
                throw new SafetensorsException(path, null, $"header length {headerLength} runs past the end of the file ({length} bytes)");
            var header = new byte[headerLength];
            ReadExactly(handle, header, 8, path, null);
            long dataStart = 8 + (long)headerLength;
            var (entries, metadata) = SafetensorsHeader.Parse(path, header, length - dataStart);
            return new SafetensorsFile(path, handle, dataStart, entries, metadata);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>Whether the file holds a tensor named <paramref name="name"/> (ordinal comparison).</summary>
    public bool Contains(string name) => _entries.ContainsKey(name);

    /// <summary>Where the tensor <paramref name="name"/> lies, without reading it; throws
    /// <see cref="SafetensorsException"/> when the file has no such tensor.</summary>
    public SafetensorsEntry Entry(string name) =>
        _entries.TryGetValue(name, out var e) ? e : throw new SafetensorsException(FilePath, name, "no such tensor in the file");

    /// <summary>Reads a tensor into new CPU memory, in its stored type; converts to <paramref name="dtype"/> and
    /// moves to <paramref name="device"/> when given. Tensors over 2 GiB are read in pieces.</summary>
    public torch.Tensor Load(string name, torch.ScalarType? dtype = null, torch.Device? device = null) =>
        Load(name, dtype, device, TensorMemory.DefaultChunkBytes);

    /// <summary><see cref="Load(string, torch.ScalarType?, torch.Device?)"/> with the read piece size as a
    /// parameter, so tests can exercise the multi-piece path on small tensors.</summary>
    internal torch.Tensor Load(string name, torch.ScalarType? dtype, torch.Device? device, int chunkBytes) =>
        Read(Entry(name), dtype, device, chunkBytes);

    /// <summary>A view of part of a stored tensor, for readers that rename or reshape what a file holds (single-file
    /// checkpoints): <paramref name="shape"/>'s elements of the stored type, starting <paramref name="byteOffset"/>
    /// bytes into <paramref name="stored"/>'s data; only those bytes are read. The range must lie inside the stored
    /// tensor.</summary>
    internal SafetensorsEntry View(string stored, string viewName, long byteOffset, long[] shape)
    {
        var entry = Entry(stored);
        long bytes = shape.Aggregate(1L, (a, b) => checked(a * b)) * entry.DType.ByteSize();
        if (byteOffset < 0 || bytes < 0 || byteOffset + bytes > entry.ByteLength)
            throw new SafetensorsException(FilePath, stored,
                $"a view of {bytes} bytes at offset {byteOffset} does not fit in its {entry.ByteLength} bytes");
        return new SafetensorsEntry(viewName, entry.DType, shape, entry.Begin + byteOffset, entry.Begin + byteOffset + bytes);
    }

    /// <summary>Reads a view made by <see cref="View"/>, as <see cref="Load(string, torch.ScalarType?, torch.Device?)"/> reads a tensor.</summary>
    internal torch.Tensor Load(SafetensorsEntry view, torch.ScalarType? dtype = null, torch.Device? device = null) =>
        Read(view, dtype, device, TensorMemory.DefaultChunkBytes);

    private torch.Tensor Read(SafetensorsEntry entry, torch.ScalarType? dtype, torch.Device? device, int chunkBytes)
    {
        var tensor = torch.empty(entry.Shape, entry.DType.ToScalarType());
        try
        {
            ReadInto(entry, tensor, chunkBytes);
            if ((dtype is null || dtype == tensor.dtype) && (device is null || device.type == DeviceType.CPU)) return tensor;
            using (tensor) return tensor.to(dtype ?? tensor.dtype, device ?? tensor.device);
        }
        catch
        {
            tensor.Dispose();
            throw;
        }
    }

    private void ReadInto(SafetensorsEntry entry, torch.Tensor tensor, int chunkBytes)
    {
        TensorMemory.ForEachChunk(tensor, chunkBytes, (chunk, offset) =>
        {
            ReadExactly(_handle, chunk, DataStart + entry.Begin + offset, FilePath, entry.Name);
            // torch assumes a bool byte is 0 or 1; any other value makes comparisons and sums inconsistent.
            if (entry.DType == SafetensorsDType.BOOL && chunk.IndexOfAnyExcept((byte)0, (byte)1) is int bad and >= 0)
                throw new SafetensorsException(FilePath, entry.Name, $"BOOL element {offset + bad} has byte value {chunk[bad]}, not 0 or 1");
        });
    }

    private static void ReadExactly(SafeFileHandle handle, Span<byte> target, long offset, string path, string? tensor)
    {
        while (target.Length > 0)
        {
            int n;
            try
            {
                n = RandomAccess.Read(handle, target, offset);
            }
            catch (IOException e)
            {
                throw new SafetensorsException(path, tensor, $"read failed at offset {offset}: {e.Message}", e);
            }
            // The file shrank after it was opened.
            if (n <= 0) throw new SafetensorsException(path, tensor, $"unexpected end of file at offset {offset}");
            target = target[n..];
            offset += n;
        }
    }

    /// <summary>Closes the file. Tensors already loaded stay valid; later loads fail.</summary>
    public void Dispose() => _handle.Dispose();
}
