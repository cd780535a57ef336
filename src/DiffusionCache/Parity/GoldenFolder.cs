using System.Text.Json;
using DiffusionCache.Formats.Json;
using DiffusionCache.Formats.Safetensors;

namespace DiffusionCache.Parity;

/// <summary>A folder of golden reference data: <c>manifest.json</c>, <c>models/</c>, <c>cases/</c>
/// (layout in shared/golden/README.md).</summary>
public sealed class GoldenFolder : IDisposable
{
    private readonly JsonDocument _manifest;
    private readonly bool _ownsManifest = true;

    /// <summary>The folder, as the path given to <see cref="Open"/>.</summary>
    public string Path { get; }

    /// <summary>The manifest's <c>kind</c> (e.g. <c>unet</c>, <c>schedulers</c>): which suite runs the
    /// folder.</summary>
    public string Kind { get; }

    /// <summary>The root of <c>manifest.json</c>, read by <see cref="PythonJson"/> (Python's bare <c>Infinity</c>
    /// and <c>NaN</c> become strings). Valid until the folder is disposed.</summary>
    public JsonElement Manifest => _manifest.RootElement;

    /// <summary>The manifest's <c>cases</c>, in order (only the chosen ones in a view made by
    /// <see cref="Where"/>).</summary>
    public IReadOnlyList<JsonElement> Cases { get; }

    private GoldenFolder(string path, JsonDocument manifest)
    {
        Path = path;
        _manifest = manifest;
        var root = manifest.RootElement;
        Kind = root.TryGetProperty("kind", out var kind) && kind.ValueKind == JsonValueKind.String
            ? kind.GetString()!
            : throw new DiffusionCacheException($"{ManifestPath(path)}: missing string field 'kind'");
        Cases = root.TryGetProperty("cases", out var cases) && cases.ValueKind == JsonValueKind.Array
            ? cases.EnumerateArray().ToArray()
            : throw new DiffusionCacheException($"{ManifestPath(path)}: missing array field 'cases'");
    }

    private GoldenFolder(GoldenFolder source, IReadOnlyList<JsonElement> cases)
    {
        Path = source.Path;
        _manifest = source._manifest;
        _ownsManifest = false;
        Kind = source.Kind;
        Cases = cases;
    }

    /// <summary>A view of this folder restricted to the cases whose id passes <paramref name="include"/>
    /// (for running one case at a time). The view shares this folder's manifest; dispose the original.</summary>
    public GoldenFolder Where(Func<string, bool> include) =>
        new(this, Cases.Where(c => include(CaseId(c))).ToArray());

    /// <summary>The case's <c>id</c> field; <c>(no id)</c> when it has none.</summary>
    public static string CaseId(JsonElement @case) =>
        @case.TryGetProperty("id", out var id) && id.ValueKind == JsonValueKind.String ? id.GetString()! : "(no id)";

    /// <summary>Opens a golden folder and reads its <c>manifest.json</c>. Throws <see cref="DiffusionCacheException"/>
    /// when the folder or manifest is missing, is not JSON or lacks the <c>kind</c> string or the <c>cases</c>
    /// array.</summary>
    public static GoldenFolder Open(string path)
    {
        if (!Directory.Exists(path)) throw new DiffusionCacheException($"{path}: golden folder not found");
        string manifest = ManifestPath(path);
        if (!File.Exists(manifest)) throw new DiffusionCacheException($"{manifest}: not found");
        try
        {
            // Python's json writes -Infinity/NaN bare (scheduler configs: lambda_min_clipped); see PythonJson.
            return new GoldenFolder(path, PythonJson.Parse(File.ReadAllBytes(manifest)));
        }
        catch (JsonException e)
        {
            throw new DiffusionCacheException($"{manifest}: not valid JSON ({e.Message})", e);
        }
    }

    /// <summary>Opens the tensors file of a case (its <c>tensors</c> field, relative to the folder).</summary>
    public SafetensorsFile OpenTensors(JsonElement @case) =>
        SafetensorsFile.Open(System.IO.Path.Combine(Path, @case.GetProperty("tensors").GetString()!));

    /// <summary>A path from the manifest (models, tokenizer, tensor files), relative to the folder, as a path to
    /// open.</summary>
    public string Resolve(string relative) => System.IO.Path.Combine(Path, relative);

    private static string ManifestPath(string path) => System.IO.Path.Combine(path, "manifest.json");

    /// <summary>Frees the manifest; <see cref="Manifest"/> and <see cref="Cases"/> are invalid after it. A view made by
    /// <see cref="Where"/> frees nothing.</summary>
    public void Dispose()
    {
        if (_ownsManifest) _manifest.Dispose();
    }
}
