using System.Text.Json;
using System.Text.Json.Serialization;
using DiffusionCache.Formats;

namespace DiffusionCache.Caching.BlockCaching;

/// <summary>The JSON settings of block-caching files: snake_case names (like the golden manifests), indented,
/// unknown fields refused, non-finite numbers as the strings <c>"Infinity"</c>/<c>"NaN"</c>.</summary>
internal static class BlockCacheJson
{
    public static JsonSerializerOptions Options { get; } = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        AllowTrailingCommas = true,
        ReadCommentHandling = JsonCommentHandling.Skip,
    };

    public static T Read<T>(string path, string what, Func<string, T> parse)
    {
        if (!File.Exists(path)) throw new DiffusionCacheException($"{path}: {what} not found");
        try
        {
            return parse(File.ReadAllText(path));
        }
        catch (DiffusionCacheException e)
        {
            throw new DiffusionCacheException($"{path}: {e.Message}", e);
        }
    }

    public static T Deserialize<T>(string json, string what)
    {
        try
        {
            return JsonSerializer.Deserialize<T>(json, Options) ?? throw new DiffusionCacheException($"not a {what} (null)");
        }
        catch (JsonException e)
        {
            throw new DiffusionCacheException($"not a valid {what}: {e.Message}", e);
        }
    }

    public static void Write(string path, string text) => AtomicFile.WriteAllText(path, text);
}
