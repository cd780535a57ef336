using System.Text.Json;

namespace DiffusionCache.Models.Config;

/// <summary>
/// Reads a diffusers <c>config.json</c> strictly: every key must be read by the model's config record, and a key
/// that changes the math with a value we do not implement is an error naming the key and the value. Keys that
/// only describe the file (<c>_class_name</c>, <c>_diffusers_version</c>, <c>sample_size</c>, ...) are read too.
/// </summary>
public sealed class ConfigReader
{
    private readonly JsonElement _root;
    private readonly HashSet<string> _read = new(StringComparer.Ordinal);

    /// <summary>What errors name as the config's origin: the file's path for <see cref="FromFile"/>.</summary>
    public string Source { get; }

    /// <summary>Reads a parsed config; its <see cref="JsonDocument"/> must stay alive while the reader is
    /// used.</summary>
    /// <param name="root">The config, which must be a JSON object.</param>
    /// <param name="source">What errors name as the config's origin (usually its path).</param>
    /// <exception cref="ConfigException"><paramref name="root"/> is not an object.</exception>
    public ConfigReader(JsonElement root, string source)
    {
        if (root.ValueKind != JsonValueKind.Object) throw Error($"config must be a JSON object, found {root.ValueKind}", source);
        _root = root;
        Source = source;
    }

    /// <summary>Parses a <c>config.json</c> and returns a reader over it.</summary>
    /// <param name="path">The config file.</param>
    /// <param name="document">The parsed document, which the caller disposes once done with the reader.</param>
    /// <exception cref="DiffusionCacheException">The file is missing, not valid JSON, or not an object.</exception>
    public static ConfigReader FromFile(string path, out JsonDocument document)
    {
        if (!File.Exists(path)) throw new DiffusionCacheException($"{path}: config file not found");
        try
        {
            document = JsonDocument.Parse(File.ReadAllBytes(path));
        }
        catch (JsonException e)
        {
            throw new DiffusionCacheException($"{path}: not valid JSON ({e.Message})", e);
        }
        return new ConfigReader(document.RootElement, path);
    }

    private bool TryGet(string key, out JsonElement value)
    {
        _read.Add(key);
        return _root.TryGetProperty(key, out value) && value.ValueKind != JsonValueKind.Null;
    }

    /// <summary>A string; <paramref name="fallback"/> when the key is missing or JSON null. Every reader method
    /// marks its key as read (see <see cref="EnsureAllRead"/>) and throws <see cref="ConfigException"/> when the
    /// value has another JSON type.</summary>
    /// <param name="key">The snake_case key.</param>
    /// <param name="fallback">The value of a missing or null key.</param>
    public string? String(string key, string? fallback)
    {
        if (!TryGet(key, out var v)) return fallback;
        return v.ValueKind == JsonValueKind.String ? v.GetString() : throw Bad(key, v, "a string");
    }

    /// <summary>A 32-bit integer; <paramref name="fallback"/> when the key is missing or JSON null.</summary>
    /// <param name="key">The snake_case key.</param>
    /// <param name="fallback">The value of a missing or null key.</param>
    public int Int(string key, int fallback)
    {
        if (!TryGet(key, out var v)) return fallback;
        return v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i) ? i : throw Bad(key, v, "an integer");
    }

    /// <summary>An integer, null when the key is JSON null, <paramref name="whenAbsent"/> when it is missing.</summary>
    public int? NullableInt(string key, int? whenAbsent = null)
    {
        _read.Add(key);
        if (!_root.TryGetProperty(key, out var v)) return whenAbsent;
        if (v.ValueKind == JsonValueKind.Null) return null;
        return v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i) ? i : throw Bad(key, v, "an integer or null");
    }

    /// <summary>A number; <paramref name="fallback"/> when the key is missing or JSON null.</summary>
    /// <param name="key">The snake_case key.</param>
    /// <param name="fallback">The value of a missing or null key.</param>
    public double Double(string key, double fallback)
    {
        if (!TryGet(key, out var v)) return fallback;
        return v.ValueKind == JsonValueKind.Number ? v.GetDouble() : throw Bad(key, v, "a number");
    }

    /// <summary>A boolean; <paramref name="fallback"/> when the key is missing or JSON null.</summary>
    /// <param name="key">The snake_case key.</param>
    /// <param name="fallback">The value of a missing or null key.</param>
    public bool Bool(string key, bool fallback)
    {
        if (!TryGet(key, out var v)) return fallback;
        return v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : throw Bad(key, v, "true or false");
    }

    /// <summary>A list of strings; <paramref name="fallback"/> when the key is missing or JSON null.</summary>
    /// <param name="key">The snake_case key.</param>
    /// <param name="fallback">The value of a missing or null key.</param>
    public IReadOnlyList<string> Strings(string key, IReadOnlyList<string> fallback)
    {
        if (!TryGet(key, out var v)) return fallback;
        if (v.ValueKind != JsonValueKind.Array || v.EnumerateArray().Any(e => e.ValueKind != JsonValueKind.String))
            throw Bad(key, v, "a list of strings");
        return v.EnumerateArray().Select(e => e.GetString()!).ToArray();
    }

    /// <summary>A list of 32-bit integers; <paramref name="fallback"/> when the key is missing or JSON null.</summary>
    /// <param name="key">The snake_case key.</param>
    /// <param name="fallback">The value of a missing or null key.</param>
    public IReadOnlyList<int> Ints(string key, IReadOnlyList<int> fallback)
    {
        if (!TryGet(key, out var v)) return fallback;
        if (v.ValueKind != JsonValueKind.Array || v.EnumerateArray().Any(e => !e.TryGetInt32(out _)))
            throw Bad(key, v, "a list of integers");
        return v.EnumerateArray().Select(e => e.GetInt32()).ToArray();
    }

    /// <summary>An integer or a per-block list of integers (diffusers accepts both for many keys);
    /// null stays null.</summary>
    public IReadOnlyList<int>? IntOrList(string key, int count)
    {
        if (!TryGet(key, out var v)) return null;
        if (v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int single)) return Enumerable.Repeat(single, count).ToArray();
        var list = Ints(key, []);
        if (list.Count != count) throw Error($"'{key}' has {list.Count} entries but the model has {count} blocks");
        return list;
    }

    /// <summary>A boolean or a per-block list of booleans (diffusers accepts both, e.g. for
    /// <c>only_cross_attention</c>).</summary>
    /// <param name="key">The snake_case key.</param>
    /// <param name="count">The number of blocks, which a list must match.</param>
    /// <param name="list">The list when the value is one; otherwise null.</param>
    /// <returns>The single value; null when the key is missing or null, or when the value is a list.</returns>
    public bool? BoolOrList(string key, int count, out IReadOnlyList<bool>? list)
    {
        list = null;
        if (!TryGet(key, out var v)) return null;
        if (v.ValueKind is JsonValueKind.True or JsonValueKind.False) return v.GetBoolean();
        if (v.ValueKind != JsonValueKind.Array || v.GetArrayLength() != count ||
            v.EnumerateArray().Any(e => e.ValueKind is not (JsonValueKind.True or JsonValueKind.False)))
            throw Bad(key, v, $"true, false or a list of {count} booleans");
        list = v.EnumerateArray().Select(e => e.GetBoolean()).ToArray();
        return null;
    }

    /// <summary>A key whose only implemented value is <paramref name="supported"/> (JSON null counts as absent).</summary>
    public void RequireAbsentOr<T>(string key, T supported, Func<string, T> read) where T : notnull
    {
        _read.Add(key);
        if (!_root.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null) return;
        T value = read(key);
        if (!EqualityComparer<T>.Default.Equals(value, supported))
            throw Unsupported(key, v.GetRawText());
    }

    /// <summary>A key that must be absent or null: any value enables a feature we do not implement.</summary>
    public void RequireNull(string key)
    {
        _read.Add(key);
        if (_root.TryGetProperty(key, out var v) && v.ValueKind != JsonValueKind.Null) throw Unsupported(key, v.GetRawText());
    }

    /// <summary>Marks keys that carry no math (file bookkeeping, informative sizes) as read.</summary>
    public void Informative(params string[] keys)
    {
        foreach (var key in keys) _read.Add(key);
    }

    /// <summary>Any key no one read is a feature of a newer or different model that we would silently ignore.</summary>
    public void EnsureAllRead()
    {
        foreach (var property in _root.EnumerateObject())
        {
            if (property.Name.StartsWith('_') || _read.Contains(property.Name)) continue;
            throw Error($"unknown config key '{property.Name}' = {Trim(property.Value.GetRawText())}; refusing to ignore it");
        }
    }

    /// <summary>An error for the caller to throw: <paramref name="key"/> has a value we do not implement.</summary>
    /// <param name="key">The key.</param>
    /// <param name="value">The value as JSON text (shortened to 80 characters in the message).</param>
    /// <returns>A <see cref="ConfigException"/> naming <see cref="Source"/>, the key and the value.</returns>
    public DiffusionCacheException Unsupported(string key, string value) =>
        Error($"config '{key}' = {Trim(value)} is not supported");

    /// <summary>An error for the caller to throw, naming the config's <see cref="Source"/>.</summary>
    /// <param name="problem">What is wrong with the config.</param>
    /// <returns>A <see cref="ConfigException"/>.</returns>
    public DiffusionCacheException Error(string problem) => Error(problem, Source);

    private static DiffusionCacheException Error(string problem, string source) => new ConfigException(source, problem);

    private DiffusionCacheException Bad(string key, JsonElement v, string expected) =>
        Error($"config '{key}' must be {expected}, found {Trim(v.GetRawText())}");

    private static string Trim(string s) => s.Length > 80 ? s[..77] + "..." : s;
}

/// <summary>A model or scheduler configuration that is malformed or asks for something we do not implement.</summary>
/// <param name="source">The config's origin (usually its path), which the message starts with.</param>
/// <param name="problem">What is wrong with it.</param>
public sealed class ConfigException(string source, string problem) : DiffusionCacheException($"{source}: {problem}")
{
    /// <summary>The config's origin (usually its path).</summary>
    public string ConfigSource { get; } = source;
}
