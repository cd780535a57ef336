using System.Text.Json;
using Microsoft.Win32.SafeHandles;
using TorchSharp;

namespace DiffusionCache.Formats.Safetensors;

/// <summary>Where one tensor lies in a safetensors file. Offsets are relative to the start of the data section.</summary>
public sealed record SafetensorsEntry(string Name, SafetensorsDType DType, long[] Shape, long Begin, long End)
{
    public long ByteLength => End - Begin;
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);
}

/// <summary>
/// Reads a safetensors file (8-byte little-endian header length, JSON header, raw little-endian data).
/// The header is validated completely on open, so every later read is in range; tensor data is streamed from
/// the file straight into the tensor's own memory (one copy, no mapping kept resident).
/// </summary>
public sealed class SafetensorsFile : IDisposable
{
    /// <summary>Headers larger than this are refused as absurd (real ones are kilobytes to a few megabytes).</summary>
    public const long MaxHeaderBytes = 100L * 1024 * 1024;

    private readonly SafeFileHandle _handle;
    private readonly Dictionary<string, SafetensorsEntry> _entries;

    public string FilePath { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }
    /// <summary>Tensors in the order of their data offsets.</summary>
    public IReadOnlyList<SafetensorsEntry> Entries { get; }
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

    public static SafetensorsFile Open(string path)
    {
        if (!File.Exists(path)) throw new SafetensorsException(path, null, "file not found");
        var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        try
        {
            long length = RandomAccess.GetLength(handle);
            if (length < 8) throw new SafetensorsException(path, null, $"truncated: {length} bytes, shorter than the 8-byte header length");
            Span<byte> prefix = stackalloc byte[8];
            RandomAccess.Read(handle, prefix, 0);
            ulong headerLength = BitConverter.ToUInt64(prefix);
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

    public bool Contains(string name) => _entries.ContainsKey(name);

    public SafetensorsEntry Entry(string name) =>
        _entries.TryGetValue(name, out var e) ? e : throw new SafetensorsException(FilePath, name, "no such tensor in the file");

    /// <summary>Reads a tensor into new CPU memory, in its stored type; converts to <paramref name="dtype"/> and
    /// moves to <paramref name="device"/> when given.</summary>
    public torch.Tensor Load(string name, torch.ScalarType? dtype = null, torch.Device? device = null)
    {
        var entry = Entry(name);
        var tensor = torch.empty(entry.Shape, entry.DType.ToScalarType());
        try
        {
            if (entry.ByteLength > 0) ReadInto(entry, tensor);
            if ((dtype is null || dtype == tensor.dtype) && (device is null || device.type == DeviceType.CPU)) return tensor;
            using (tensor) return tensor.to(dtype ?? tensor.dtype, device ?? tensor.device);
        }
        catch
        {
            tensor.Dispose();
            throw;
        }
    }

    private void ReadInto(SafetensorsEntry entry, torch.Tensor tensor)
    {
        if (entry.ByteLength > int.MaxValue)
            throw new SafetensorsException(FilePath, entry.Name, $"{entry.ByteLength} bytes exceed the 2 GiB a single tensor read supports");
        ReadExactly(_handle, tensor.bytes, DataStart + entry.Begin, FilePath, entry.Name);
    }

    private static void ReadExactly(SafeFileHandle handle, Span<byte> target, long offset, string path, string? tensor)
    {
        while (target.Length > 0)
        {
            int n = RandomAccess.Read(handle, target, offset);
            if (n <= 0) throw new SafetensorsException(path, tensor, "unexpected end of file while reading");
            target = target[n..];
            offset += n;
        }
    }

    public void Dispose() => _handle.Dispose();
}
