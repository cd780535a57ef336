using System.Text.Json;

namespace DiffusionCache.Models.Text;

/// <summary>The special tokens and length a CLIP tokenizer folder declares. transformers reads
/// <c>tokenizer_config.json</c>, then lets <c>special_tokens_map.json</c> override any token it names; a token that
/// neither names keeps CLIPTokenizer's default. Both files are optional, as in transformers.</summary>
internal sealed record ClipTokenizerConfig(string Bos, string Eos, string Unk, string Pad, int ModelMaxLength)
{
    /// <summary>CLIP's context length, used where the config gives none or an absurd one (transformers writes
    /// 1e30 when the length is unknown).</summary>
    public const int DefaultMaxLength = 77;

    private const int AbsurdMaxLength = 1 << 20;

    public static ClipTokenizerConfig Read(string folder)
    {
        var tokens = new Dictionary<string, string>
        {
            ["bos_token"] = "<|startoftext|>", ["eos_token"] = "<|endoftext|>",
            ["unk_token"] = "<|endoftext|>", ["pad_token"] = "<|endoftext|>",
        };
        int maxLength = DefaultMaxLength;
        foreach (string file in new[] { "tokenizer_config.json", "special_tokens_map.json" })
        {
            string path = Path.Combine(folder, file);
            if (!File.Exists(path)) continue;
            using var doc = ClipTokenizer.ParseJson(path);
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new DiffusionCacheException($"{path}: expected a JSON object, found {doc.RootElement.ValueKind}");
            foreach (string key in tokens.Keys.ToArray())
                if (doc.RootElement.TryGetProperty(key, out var value) && value.ValueKind != JsonValueKind.Null)
                    tokens[key] = TokenContent(value) ?? throw new DiffusionCacheException(
                        $"{path}: {key} must be a string or an object with a \"content\" string");
            if (file == "tokenizer_config.json" && doc.RootElement.TryGetProperty("model_max_length", out var m))
                maxLength = MaxLength(m, path);
        }
        return new(tokens["bos_token"], tokens["eos_token"], tokens["unk_token"], tokens["pad_token"], maxLength);
    }

    /// <summary>A token is written as its string or as a serialised AddedToken <c>{"content": ...}</c>.</summary>
    private static string? TokenContent(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.String => value.GetString(),
        JsonValueKind.Object when value.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String
            => c.GetString(),
        _ => null,
    };

    private static int MaxLength(JsonElement value, string path)
    {
        if (value.ValueKind == JsonValueKind.Null) return DefaultMaxLength;
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetDouble(out double d) || d != Math.Floor(d) || d < 3)
            throw new DiffusionCacheException($"{path}: model_max_length must be an integer of at least 3, found {value.GetRawText()}");
        return d > AbsurdMaxLength ? DefaultMaxLength : (int)d;
    }
}
