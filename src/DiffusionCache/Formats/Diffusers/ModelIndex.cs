using System.Text.Json;

namespace DiffusionCache.Formats.Diffusers;

/// <summary>One component entry of <c>model_index.json</c>: <c>["diffusers", "UNet2DConditionModel"]</c>; both are
/// null for a component the pipeline was saved without (<c>[null, null]</c>).</summary>
/// <param name="Name">The component's key in <c>model_index.json</c>, which is also its subfolder (e.g.
/// <c>unet</c>).</param>
/// <param name="Library">The library that defines its class (<c>diffusers</c>, <c>transformers</c>); null when
/// absent.</param>
/// <param name="ClassName">Its class (e.g. <c>UNet2DConditionModel</c>, <c>CLIPTextModel</c>); null when
/// absent.</param>
public sealed record PipelineComponent(string Name, string? Library, string? ClassName)
{
    /// <summary>Whether the pipeline was saved with this component (its class is named).</summary>
    public bool IsPresent => ClassName is not null;
}

/// <summary>
/// A diffusers pipeline folder's <c>model_index.json</c>: the pipeline class, its components (each a subfolder named
/// after it) and the pipeline's own settings (<c>requires_safety_checker</c>, <c>force_zeros_for_empty_prompt</c>).
/// </summary>
public sealed class ModelIndex
{
    /// <summary>The index's file name in a pipeline folder.</summary>
    public const string FileName = "model_index.json";

    /// <summary>The pipeline folder, as given to <see cref="Load"/>.</summary>
    public string Folder { get; }

    /// <summary>The pipeline class, <c>_class_name</c> (e.g. <c>StableDiffusionPipeline</c>).</summary>
    public string ClassName { get; }

    /// <summary>Every <c>[library, class]</c> entry by component name, absent ones (<c>[null, null]</c>)
    /// included.</summary>
    public IReadOnlyDictionary<string, PipelineComponent> Components { get; }
    private readonly Dictionary<string, JsonElement> _settings;

    private ModelIndex(string folder, string className, Dictionary<string, PipelineComponent> components, Dictionary<string, JsonElement> settings)
    {
        Folder = folder;
        ClassName = className;
        Components = components;
        _settings = settings;
    }

    /// <summary>Whether <paramref name="folder"/> holds a <c>model_index.json</c> (is a diffusers pipeline
    /// folder).</summary>
    public static bool Exists(string folder) => File.Exists(Path.Combine(folder, FileName));

    /// <summary>Reads <paramref name="folder"/>'s <c>model_index.json</c>. Throws <see cref="DiffusionCacheException"/>
    /// when the folder or the file is missing, the file is not a JSON object or it lacks <c>_class_name</c>.</summary>
    public static ModelIndex Load(string folder)
    {
        if (!Directory.Exists(folder)) throw new DiffusionCacheException($"{folder}: folder not found");
        string path = Path.Combine(folder, FileName);
        if (!File.Exists(path)) throw new DiffusionCacheException($"{folder}: not a diffusers pipeline folder ({FileName} not found)");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(File.ReadAllBytes(path));
        }
        catch (JsonException e)
        {
            throw new DiffusionCacheException($"{path}: not valid JSON ({e.Message})", e);
        }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw new DiffusionCacheException($"{path}: expected a JSON object");
            string className = root.TryGetProperty("_class_name", out var c) && c.ValueKind == JsonValueKind.String
                ? c.GetString()! : throw new DiffusionCacheException($"{path}: missing '_class_name'");
            var components = new Dictionary<string, PipelineComponent>(StringComparer.Ordinal);
            var settings = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
            foreach (var p in root.EnumerateObject())
            {
                if (p.Name.StartsWith('_')) continue;
                // A component is a [library, class] pair; anything else is a pipeline setting.
                if (p.Value.ValueKind == JsonValueKind.Array && p.Value.GetArrayLength() == 2 &&
                    p.Value.EnumerateArray().All(e => e.ValueKind is JsonValueKind.String or JsonValueKind.Null))
                {
                    var pair = p.Value.EnumerateArray().Select(e => e.ValueKind == JsonValueKind.String ? e.GetString() : null).ToArray();
                    components[p.Name] = new PipelineComponent(p.Name, pair[0], pair[1]);
                }
                else settings[p.Name] = p.Value.Clone();
            }
            return new ModelIndex(folder, className, components, settings);
        }
    }

    /// <summary>The component's subfolder; an error naming the pipeline when it is absent or of another class.</summary>
    public string Require(string component, params string[] classes)
    {
        if (!Components.TryGetValue(component, out var entry) || !entry.IsPresent)
            throw new DiffusionCacheException($"{Folder}: the {ClassName} has no '{component}' component");
        if (classes.Length > 0 && !classes.Contains(entry.ClassName))
            throw new DiffusionCacheException($"{Folder}: component '{component}' is a {entry.ClassName}, which is not supported (supported: {string.Join(", ", classes)})");
        string dir = Path.Combine(Folder, component);
        if (!Directory.Exists(dir)) throw new DiffusionCacheException($"{dir}: component folder not found ({FileName} lists '{component}')");
        return dir;
    }

    /// <summary>A boolean pipeline setting (e.g. <c>force_zeros_for_empty_prompt</c>); <paramref name="fallback"/>
    /// when it is absent or not a boolean.</summary>
    public bool Bool(string setting, bool fallback) =>
        _settings.TryGetValue(setting, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : fallback;
}
