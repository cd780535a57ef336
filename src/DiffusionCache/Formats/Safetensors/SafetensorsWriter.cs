using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using TorchSharp;

namespace DiffusionCache.Formats.Safetensors;

/// <summary>
/// Writes safetensors files laid out as the reference implementation (huggingface/safetensors, since 0.3) lays
/// them out: tensors ordered by dtype as the reference orders them (largest element size first), then by name (UTF-8
/// byte order), so each tensor's data is aligned to its element size; compact JSON header with <c>__metadata__</c> first, padded with spaces to a
/// multiple of 8 bytes; data contiguous with no holes. For the same tensors and at most one metadata key, the
/// bytes equal the reference's. Readers, ours included, accept any order.
/// </summary>
public static class SafetensorsWriter
{
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>Writes <paramref name="tensors"/> to <paramref name="path"/>, atomically: the data goes to a temporary
    /// file in the same folder, which replaces <paramref name="path"/> only once complete and flushed, and is deleted
    /// on any failure. Tensors may be non-contiguous or on any device.</summary>
    public static void Write(string path, IEnumerable<KeyValuePair<string, torch.Tensor>> tensors,
        IReadOnlyDictionary<string, string>? metadata = null) =>
        Write(path, tensors, metadata, TensorMemory.DefaultChunkBytes);

    internal static void Write(string path, IEnumerable<KeyValuePair<string, torch.Tensor>> tensors,
        IReadOnlyDictionary<string, string>? metadata, int chunkBytes)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(tensors);

        var items = Describe(path, tensors);
        byte[] header = BuildHeader(path, items, metadata);

        string fullPath = Path.GetFullPath(path);
        string folder = Path.GetDirectoryName(fullPath)!;
        if (!Directory.Exists(folder)) throw new SafetensorsException(path, null, $"folder {folder} does not exist");
        // Same folder, so the final rename cannot cross file systems; hidden and random, so it collides with nothing.
        string temp = Path.Combine(folder, $".{Path.GetFileName(fullPath)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                Span<byte> prefix = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)header.Length);
                stream.Write(prefix);
                stream.Write(header);
                foreach (var item in items) WriteData(path, stream, item, chunkBytes);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, fullPath, overwrite: true);
        }
        catch (Exception e)
        {
            TryDelete(temp);
            if (e is IOException or UnauthorizedAccessException)
                throw new SafetensorsException(path, null, $"cannot write: {e.Message}", e);
            throw;
        }
    }

    private sealed record Item(string Name, byte[] Utf8Name, torch.Tensor Tensor, SafetensorsDType DType, long[] Shape, long ByteLength);

    private static List<Item> Describe(string path, IEnumerable<KeyValuePair<string, torch.Tensor>> tensors)
    {
        var items = new List<Item>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, tensor) in tensors)
        {
            if (name is null) throw new SafetensorsException(path, null, "a tensor has a null name");
            if (tensor is null) throw new SafetensorsException(path, name, "tensor is null");
            if (name == "__metadata__") throw new SafetensorsException(path, name, "name is reserved for the header metadata");
            if (!seen.Add(name)) throw new SafetensorsException(path, name, "duplicate tensor name");
            SafetensorsDType dtype;
            try { dtype = SafetensorsDTypes.FromScalarType(tensor.dtype); }
            catch (DiffusionCacheException e) { throw new SafetensorsException(path, name, e.Message, e); }
            var shape = tensor.shape;
            items.Add(new Item(name, Encode(path, name, name), tensor, dtype, shape,
                tensor.NumberOfElements * dtype.ByteSize()));
        }
        items.Sort((a, b) =>
        {
            int byType = ReferenceRank(b.DType).CompareTo(ReferenceRank(a.DType));
            return byType != 0 ? byType : a.Utf8Name.AsSpan().SequenceCompareTo(b.Utf8Name);
        });
        return items;
    }

    /// <summary>Position in the reference's Dtype enum, which it sorts by, descending. The enum runs by element
    /// size, so this orders largest elements first; within a size: I64, F64 / F32, I32 / BF16, F16, I16 / I8, U8, BOOL.</summary>
    private static int ReferenceRank(SafetensorsDType dtype) => dtype switch
    {
        SafetensorsDType.BOOL => 0,
        SafetensorsDType.U8 => 1,
        SafetensorsDType.I8 => 2,
        SafetensorsDType.I16 => 3,
        SafetensorsDType.F16 => 4,
        SafetensorsDType.BF16 => 5,
        SafetensorsDType.I32 => 6,
        SafetensorsDType.F32 => 7,
        SafetensorsDType.F64 => 8,
        _ => 9,   // I64
    };

    private static byte[] Encode(string path, string? tensor, string text)
    {
        try { return StrictUtf8.GetBytes(text); }
        catch (EncoderFallbackException e)
        {
            throw new SafetensorsException(path, tensor, "text is not valid Unicode (lone surrogate); it cannot be stored as UTF-8", e);
        }
    }

    private static byte[] BuildHeader(string path, List<Item> items, IReadOnlyDictionary<string, string>? metadata)
    {
        var json = new StringBuilder("{");
        if (metadata is not null)
        {
            json.Append("\"__metadata__\":{");
            bool first = true;
            // Sorted so the same metadata always gives the same bytes (the reference's map order is arbitrary).
            foreach (var (key, value) in metadata.OrderBy(p => p.Key, StringComparer.Ordinal))
            {
                if (value is null) throw new SafetensorsException(path, null, $"metadata value of '{key}' is null");
                if (!first) json.Append(',');
                first = false;
                AppendString(json, key).Append(':');
                AppendString(json, value);
            }
            json.Append('}');
        }

        long offset = 0;
        foreach (var item in items)
        {
            if (json.Length > 1) json.Append(',');
            AppendString(json, item.Name).Append(":{\"dtype\":\"").Append(item.DType).Append("\",\"shape\":[");
            json.AppendJoin(',', item.Shape.Select(d => d.ToString(CultureInfo.InvariantCulture)));
            json.Append("],\"data_offsets\":[").Append(offset.ToString(CultureInfo.InvariantCulture)).Append(',');
            offset += item.ByteLength;
            json.Append(offset.ToString(CultureInfo.InvariantCulture)).Append("]}");
        }
        json.Append('}');

        byte[] text = Encode(path, null, json.ToString());
        int padded = (text.Length + 7) / 8 * 8;
        if (padded > SafetensorsFile.MaxHeaderBytes)
            throw new SafetensorsException(path, null, $"header of {padded} bytes exceeds the {SafetensorsFile.MaxHeaderBytes}-byte limit readers enforce");
        var header = new byte[padded];
        text.CopyTo(header, 0);
        header.AsSpan(text.Length).Fill((byte)' ');
        return header;
    }

    /// <summary>A JSON string escaped as serde_json (the reference) does: quote, backslash and control characters
    /// only; everything else raw UTF-8.</summary>
    private static StringBuilder AppendString(StringBuilder json, string text)
    {
        json.Append('"');
        foreach (char c in text)
        {
            switch (c)
            {
                case '"': json.Append("\\\""); break;
                case '\\': json.Append("\\\\"); break;
                case '\b': json.Append("\\b"); break;
                case '\f': json.Append("\\f"); break;
                case '\n': json.Append("\\n"); break;
                case '\r': json.Append("\\r"); break;
                case '\t': json.Append("\\t"); break;
                default:
                    if (c < 0x20) json.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    else json.Append(c);
                    break;
            }
        }
        return json.Append('"');
    }

    private static void WriteData(string path, FileStream stream, Item item, int chunkBytes)
    {
        if (item.ByteLength == 0) return;
        using var contiguous = item.Tensor.contiguous();
        using var cpu = contiguous.cpu();
        long written = 0;
        TensorMemory.ForEachChunk(cpu, chunkBytes, (chunk, _) =>
        {
            stream.Write(chunk);
            written += chunk.Length;
        });
        if (written != item.ByteLength)
            throw new SafetensorsException(path, item.Name, $"wrote {written} bytes but the header promises {item.ByteLength}");
    }

    private static void TryDelete(string file)
    {
        try { File.Delete(file); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { /* the original error matters more */ }
    }
}
