using System.Text.Json;
using System.Text.Unicode;

namespace DiffusionCache.Formats.Safetensors;

/// <summary>Parses and validates the JSON header of a safetensors file against the size of its data section.
/// Every problem becomes a <see cref="SafetensorsException"/>; nothing a hostile header holds reaches torch
/// unchecked.</summary>
internal static class SafetensorsHeader
{
    /// <summary>No real tensor comes near this; the cap keeps absurd ranks (a header may list millions of dims)
    /// away from libtorch.</summary>
    public const int MaxRank = 64;

    public static (Dictionary<string, SafetensorsEntry> Entries, Dictionary<string, string> Metadata) Parse(
        string path, byte[] header, long dataLength)
    {
        // System.Text.Json checks UTF-8 only lazily, when a string is read; check it all up front, as the
        // reference does (str::from_utf8), so invalid bytes are a header error wherever they are.
        if (!Utf8.IsValid(header)) throw new SafetensorsException(path, null, "header is not valid UTF-8");

        JsonDocument doc;
        try
        {
            // A safetensors header nests 3 deep; 16 refuses deeply nested input early, without recursion trouble.
            doc = JsonDocument.Parse(header, new JsonDocumentOptions { MaxDepth = 16 });
        }
        catch (JsonException e)
        {
            throw new SafetensorsException(path, null, $"header is not valid JSON ({e.Message})", e);
        }

        using (doc)
        {
            try
            {
                return ParseRoot(path, doc.RootElement, dataLength);
            }
            catch (InvalidOperationException e)
            {
                // Reading a string whose \u escapes form a lone surrogate: valid JSON syntax, not valid text.
                throw new SafetensorsException(path, null, $"header holds a string that is not valid Unicode ({e.Message})", e);
            }
        }
    }

    private static (Dictionary<string, SafetensorsEntry>, Dictionary<string, string>) ParseRoot(
        string path, JsonElement root, long dataLength)
    {
        if (root.ValueKind != JsonValueKind.Object)
            throw new SafetensorsException(path, null, $"header must be a JSON object, found {root.ValueKind}");

        var entries = new Dictionary<string, SafetensorsEntry>(StringComparer.Ordinal);
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        bool sawMetadata = false;
        foreach (var property in root.EnumerateObject())
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

        CheckCoverage(path, entries.Values, dataLength);
        return (entries, metadata);
    }

    private static void ReadMetadata(string path, JsonElement value, Dictionary<string, string> metadata)
    {
        if (value.ValueKind == JsonValueKind.Null) return;   // the reference reads null as "no metadata"
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

        JsonElement? dtypeElement = null, shapeElement = null, offsetsElement = null;
        foreach (var field in value.EnumerateObject())
        {
            // Unknown fields are ignored, as by the reference; a repeated field would be ambiguous.
            switch (field.Name)
            {
                case "dtype": Take(path, name, field, ref dtypeElement); break;
                case "shape": Take(path, name, field, ref shapeElement); break;
                case "data_offsets": Take(path, name, field, ref offsetsElement); break;
            }
        }

        if (dtypeElement is not { ValueKind: JsonValueKind.String } dtypeValue)
            throw new SafetensorsException(path, name, "missing or non-string 'dtype'");
        string code = dtypeValue.GetString()!;
        if (!SafetensorsDTypes.TryParse(code, out var dtype))
            throw new SafetensorsException(path, name, $"unsupported dtype '{code}'");

        if (shapeElement is not { ValueKind: JsonValueKind.Array } shapeValue)
            throw new SafetensorsException(path, name, "missing or non-array 'shape'");
        int rank = shapeValue.GetArrayLength();
        if (rank > MaxRank) throw new SafetensorsException(path, name, $"shape has {rank} dimensions (limit {MaxRank})");
        var shape = new long[rank];
        long elements = 1, extent = 1;
        int i = 0;
        foreach (var dim in shapeValue.EnumerateArray())
        {
            if (dim.ValueKind != JsonValueKind.Number || !dim.TryGetInt64(out long d) || d < 0)
                throw new SafetensorsException(path, name, $"shape entries must be non-negative integers, found {Snippet(dim)}");
            shape[i++] = d;
            try
            {
                elements = checked(elements * d);
                // libtorch derives strides from the non-zero sizes even when a zero dim makes the tensor empty,
                // so those must not overflow either.
                extent = checked(extent * Math.Max(d, 1));
            }
            catch (OverflowException)
            {
                throw new SafetensorsException(path, name, $"shape [{string.Join(", ", shape.Take(i))}, ...] is too large to address");
            }
        }

        if (offsetsElement is not { ValueKind: JsonValueKind.Array } offsets || offsets.GetArrayLength() != 2)
            throw new SafetensorsException(path, name, "'data_offsets' must be an array [begin, end]");
        long begin = ReadOffset(path, name, offsets[0]);
        long end = ReadOffset(path, name, offsets[1]);
        if (end < begin) throw new SafetensorsException(path, name, $"data_offsets end {end} is before begin {begin}");
        if (end > dataLength)
            throw new SafetensorsException(path, name, $"data_offsets [{begin}, {end}] run past the data section ({dataLength} bytes)");

        long expected;
        try { expected = checked(elements * dtype.ByteSize()); }
        catch (OverflowException) { throw new SafetensorsException(path, name, "shape is too large to address"); }
        if (end - begin != expected)
            throw new SafetensorsException(path, name,
                $"data_offsets span {end - begin} bytes but shape [{string.Join(", ", shape)}] of {code} needs {expected}");
        return new SafetensorsEntry(name, dtype, shape, begin, end);
    }

    private static void Take(string path, string name, JsonProperty field, ref JsonElement? slot)
    {
        if (slot is not null) throw new SafetensorsException(path, name, $"duplicate field '{field.Name}'");
        slot = field.Value;
    }

    /// <summary>The start of a JSON value for an error message; a hostile value may be megabytes long.</summary>
    private static string Snippet(JsonElement e)
    {
        string raw = e.GetRawText();
        return raw.Length <= 40 ? raw : raw[..40] + "...";
    }

    private static long ReadOffset(string path, string name, JsonElement e)
    {
        if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt64(out long v) || v < 0)
            throw new SafetensorsException(path, name, $"data_offsets must be non-negative integers, found {Snippet(e)}");
        return v;
    }

    /// <summary>
    /// The tensors, in offset order, must tile the data section exactly: no overlap, no hole between tensors and
    /// no bytes after the last one. This is the reference crate's rule (InvalidOffset, MetadataIncompleteBuffer);
    /// following it means every file we accept is one the reference accepts, and no unaccounted bytes (a
    /// polyglot payload, a half-written tail) pass silently.
    /// </summary>
    private static void CheckCoverage(string path, IEnumerable<SafetensorsEntry> entries, long dataLength)
    {
        long cursor = 0;
        SafetensorsEntry? previous = null;
        foreach (var e in entries.OrderBy(e => e.Begin).ThenBy(e => e.End))
        {
            if (e.Begin < cursor)
                throw new SafetensorsException(path, e.Name, $"data [{e.Begin}, {e.End}] overlaps tensor '{previous!.Name}' [{previous.Begin}, {previous.End}]");
            if (e.Begin > cursor)
                throw new SafetensorsException(path, e.Name, $"data starts at {e.Begin}, leaving {e.Begin - cursor} unused bytes before it (holes are not allowed)");
            cursor = e.End;
            previous = e;
        }
        if (cursor != dataLength)
            throw new SafetensorsException(path, null, $"data section has {dataLength - cursor} bytes after the last tensor (trailing bytes are not allowed)");
    }
}
