using System.Text.Json;

namespace DiffusionCache.Formats.Safetensors;

/// <summary>Parses and validates the JSON header of a safetensors file against the size of its data section.</summary>
internal static class SafetensorsHeader
{
    public static (Dictionary<string, SafetensorsEntry> Entries, Dictionary<string, string> Metadata) Parse(
        string path, byte[] header, long dataLength)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(header, new JsonDocumentOptions { MaxDepth = 16 });
        }
        catch (JsonException e)
        {
            throw new SafetensorsException(path, null, $"header is not valid JSON ({e.Message})");
        }
        catch (ArgumentException e)
        {
            throw new SafetensorsException(path, null, $"header is not valid UTF-8 JSON ({e.Message})");
        }

        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new SafetensorsException(path, null, $"header must be a JSON object, found {doc.RootElement.ValueKind}");

            var entries = new Dictionary<string, SafetensorsEntry>(StringComparer.Ordinal);
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            bool sawMetadata = false;
            foreach (var property in doc.RootElement.EnumerateObject())
            {
                if (property.Name == "__metadata__")
                {
                    if (sawMetadata) throw new SafetensorsException(path, null, "duplicate '__metadata__' entry");
                    sawMetadata = true;
                    ReadMetadata(path, property.Value, metadata);
                    continue;
                }
                if (entries.ContainsKey(property.Name))
                    throw new SafetensorsException(path, property.Name, "duplicate tensor name in header");
                entries.Add(property.Name, ReadEntry(path, property.Name, property.Value, dataLength));
            }

            CheckNoOverlap(path, entries.Values);
            return (entries, metadata);
        }
    }

    private static void ReadMetadata(string path, JsonElement value, Dictionary<string, string> metadata)
    {
        if (value.ValueKind != JsonValueKind.Object)
            throw new SafetensorsException(path, null, "'__metadata__' must be an object of strings");
        foreach (var item in value.EnumerateObject())
        {
            if (item.Value.ValueKind != JsonValueKind.String)
                throw new SafetensorsException(path, null, $"'__metadata__' value '{item.Name}' is not a string");
            if (!metadata.TryAdd(item.Name, item.Value.GetString()!))
                throw new SafetensorsException(path, null, $"duplicate '__metadata__' key '{item.Name}'");
        }
    }

    private static SafetensorsEntry ReadEntry(string path, string name, JsonElement value, long dataLength)
    {
        if (value.ValueKind != JsonValueKind.Object)
            throw new SafetensorsException(path, name, "header entry must be an object with dtype, shape and data_offsets");

        if (!value.TryGetProperty("dtype", out var dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String)
            throw new SafetensorsException(path, name, "missing or non-string 'dtype'");
        string code = dtypeElement.GetString()!;
        if (!SafetensorsDTypes.TryParse(code, out var dtype))
            throw new SafetensorsException(path, name, $"unsupported dtype '{code}'");

        if (!value.TryGetProperty("shape", out var shapeElement) || shapeElement.ValueKind != JsonValueKind.Array)
            throw new SafetensorsException(path, name, "missing or non-array 'shape'");
        var shape = new long[shapeElement.GetArrayLength()];
        long elements = 1;
        int i = 0;
        foreach (var dim in shapeElement.EnumerateArray())
        {
            if (dim.ValueKind != JsonValueKind.Number || !dim.TryGetInt64(out long d) || d < 0)
                throw new SafetensorsException(path, name, "shape entries must be non-negative integers");
            shape[i++] = d;
            try { elements = checked(elements * d); }
            catch (OverflowException) { throw new SafetensorsException(path, name, "shape has more elements than can be addressed"); }
        }

        if (!value.TryGetProperty("data_offsets", out var offsets) || offsets.ValueKind != JsonValueKind.Array ||
            offsets.GetArrayLength() != 2)
            throw new SafetensorsException(path, name, "'data_offsets' must be an array [begin, end]");
        long begin = ReadOffset(path, name, offsets[0]);
        long end = ReadOffset(path, name, offsets[1]);
        if (end < begin) throw new SafetensorsException(path, name, $"data_offsets end {end} is before begin {begin}");
        if (end > dataLength)
            throw new SafetensorsException(path, name, $"data_offsets [{begin}, {end}] run past the data section ({dataLength} bytes)");

        long expected;
        try { expected = checked(elements * dtype.ByteSize()); }
        catch (OverflowException) { throw new SafetensorsException(path, name, "shape is too large"); }
        if (end - begin != expected)
            throw new SafetensorsException(path, name,
                $"data_offsets span {end - begin} bytes but shape [{string.Join(", ", shape)}] of {code} needs {expected}");
        return new SafetensorsEntry(name, dtype, shape, begin, end);
    }

    private static long ReadOffset(string path, string name, JsonElement e)
    {
        if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt64(out long v) || v < 0)
            throw new SafetensorsException(path, name, "data_offsets must be non-negative integers");
        return v;
    }

    private static void CheckNoOverlap(string path, IEnumerable<SafetensorsEntry> entries)
    {
        SafetensorsEntry? previous = null;
        foreach (var e in entries.Where(e => e.ByteLength > 0).OrderBy(e => e.Begin))
        {
            if (previous is not null && e.Begin < previous.End)
                throw new SafetensorsException(path, e.Name, $"data overlaps tensor '{previous.Name}'");
            previous = e;
        }
    }
}
