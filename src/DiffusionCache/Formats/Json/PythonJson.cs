using System.Text;
using System.Text.Json;

namespace DiffusionCache.Formats.Json;

/// <summary>
/// JSON as Python's <c>json</c> module writes it. Python writes <c>float("inf")</c> and <c>nan</c> as the bare
/// tokens <c>Infinity</c>, <c>-Infinity</c> and <c>NaN</c>, which are not JSON and which System.Text.Json refuses.
/// diffusers' <c>scheduler_config.json</c> files carry them (DPMSolverMultistepScheduler writes
/// <c>"lambda_min_clipped": -Infinity</c>). <see cref="Parse(ReadOnlySpan{byte})"/> turns those tokens (outside
/// strings) into the strings <c>"Infinity"</c>, <c>"-Infinity"</c>, <c>"NaN"</c>; <see cref="TryGetDouble"/>
/// reads a number or one of those strings back.
/// </summary>
public static class PythonJson
{
    private static readonly (byte[] Token, byte[] Replacement)[] NonFinite =
        [.. new[] { "-Infinity", "Infinity", "NaN" }.Select(t => (Encoding.ASCII.GetBytes(t), Encoding.ASCII.GetBytes($"\"{t}\"")))];

    /// <summary>Parses UTF-8 JSON that may hold Python's bare <c>Infinity</c>, <c>-Infinity</c> and <c>NaN</c>, which
    /// become strings. The caller disposes the document. Throws <see cref="JsonException"/> for anything else that is
    /// not JSON.</summary>
    public static JsonDocument Parse(ReadOnlySpan<byte> utf8) => JsonDocument.Parse(Rewrite(utf8));

    /// <inheritdoc cref="Parse(ReadOnlySpan{byte})"/>
    public static JsonDocument Parse(string text) => Parse(Encoding.UTF8.GetBytes(text));

    /// <summary>Reads a JSON number, or one of the strings <c>"Infinity"</c>, <c>"-Infinity"</c>, <c>"NaN"</c>.</summary>
    public static bool TryGetDouble(JsonElement element, out double value)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Number:
                return element.TryGetDouble(out value);
            case JsonValueKind.String:
                switch (element.GetString())
                {
                    case "Infinity": value = double.PositiveInfinity; return true;
                    case "-Infinity": value = double.NegativeInfinity; return true;
                    case "NaN": value = double.NaN; return true;
                }
                break;
        }
        value = 0;
        return false;
    }

    private static byte[] Rewrite(ReadOnlySpan<byte> utf8)
    {
        var output = new List<byte>(utf8.Length + 16);
        bool inString = false;
        for (int i = 0; i < utf8.Length; i++)
        {
            byte b = utf8[i];
            if (inString)
            {
                output.Add(b);
                if (b == (byte)'\\' && i + 1 < utf8.Length) output.Add(utf8[++i]);
                else if (b == (byte)'"') inString = false;
                continue;
            }
            if (b == (byte)'"')
            {
                inString = true;
                output.Add(b);
                continue;
            }
            bool replaced = false;
            foreach (var (token, replacement) in NonFinite)
            {
                if (utf8[i..].StartsWith(token))
                {
                    output.AddRange(replacement);
                    i += token.Length - 1;
                    replaced = true;
                    break;
                }
            }
            if (!replaced) output.Add(b);
        }
        return output.ToArray();
    }
}
