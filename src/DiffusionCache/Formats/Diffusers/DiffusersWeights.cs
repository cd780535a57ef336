using System.Text.Json;
using System.Text.Unicode;
using DiffusionCache.Formats.Safetensors;
using TorchSharp;

namespace DiffusionCache.Formats.Diffusers;

/// <summary>
/// The safetensors weights of one diffusers component folder: a single file <c>{stem}.safetensors</c>, or a sharded
/// checkpoint <c>{stem}.safetensors.index.json</c> whose <c>weight_map</c> names the shard of every tensor. A variant
/// ("fp16") goes before the last extension as diffusers' <c>_add_variant</c> puts it: <c>{stem}.fp16.safetensors</c>,
/// <c>{stem}.safetensors.index.fp16.json</c>. When both an index and a single file exist the index wins, as in
/// diffusers' <c>from_pretrained</c>. All files stay open until disposed; tensors are read on demand.
/// </summary>
public sealed class DiffusersWeights : ITensorSource, IDisposable
{
    /// <summary>The file stem of diffusers model weights (transformers models such as CLIPTextModel use
    /// <c>model</c>).</summary>
    public const string DefaultStem = "diffusion_pytorch_model";

    /// <summary>Far above any real index (a few MB for the largest models); refuses absurd input before parsing.</summary>
    private const long MaxIndexBytes = 100_000_000;

    private readonly IReadOnlyList<SafetensorsFile> _files;
    private readonly Dictionary<string, SafetensorsFile> _fileOf;

    /// <summary>The model folder, as a full path.</summary>
    public string ModelDir { get; }
    /// <summary>The weights variant in the file names (e.g. <c>fp16</c>); null for the default weights.</summary>
    public string? Variant { get; }
    /// <summary>The index file of a sharded checkpoint; null for a single file.</summary>
    public string? IndexPath { get; }
    /// <summary>The safetensors files in use: the single file, or the shards in name order.</summary>
    public IReadOnlyList<string> FilePaths { get; }
    /// <summary>Every tensor name, in ordinal order.</summary>
    public IReadOnlyCollection<string> Names { get; }
    /// <summary>Bytes of all tensors as stored.</summary>
    public long TotalBytes { get; }

    /// <summary>The index file of a sharded checkpoint, otherwise the single safetensors file.</summary>
    public string Description => IndexPath ?? (FilePaths.Count == 1 ? FilePaths[0] : ModelDir);

    private DiffusersWeights(string modelDir, string? variant, string? indexPath, IReadOnlyList<SafetensorsFile> files,
        Dictionary<string, SafetensorsFile> fileOf)
    {
        ModelDir = modelDir;
        Variant = variant;
        IndexPath = indexPath;
        _files = files;
        _fileOf = fileOf;
        FilePaths = files.Select(f => f.FilePath).ToArray();
        Names = fileOf.Keys.Order(StringComparer.Ordinal).ToArray();
        TotalBytes = files.Sum(f => f.Entries.Sum(e => e.ByteLength));
    }

    /// <summary>Opens the weights in <paramref name="modelDir"/>. Throws <see cref="DiffusionCacheException"/> when
    /// the folder or its weight files are missing or the index is inconsistent, and
    /// <see cref="SafetensorsException"/> when a weight file is malformed.</summary>
    public static DiffusersWeights Open(string modelDir, string? variant = null, string stem = DefaultStem)
    {
        ArgumentNullException.ThrowIfNull(modelDir);
        CheckNamePart(stem, "file stem");
        if (variant is not null) CheckNamePart(variant, "variant");
        modelDir = Path.TrimEndingDirectorySeparator(Path.GetFullPath(modelDir));
        if (!Directory.Exists(modelDir)) throw new DiffusionCacheException($"{modelDir}: model folder not found");

        string suffix = variant is null ? "" : "." + variant;
        string single = Path.Combine(modelDir, $"{stem}{suffix}.safetensors");
        string index = Path.Combine(modelDir, $"{stem}.safetensors.index{suffix}.json");
        if (File.Exists(index)) return OpenSharded(modelDir, variant, index);
        if (File.Exists(single))
        {
            var file = SafetensorsFile.Open(single);
            return new DiffusersWeights(modelDir, variant, null, [file],
                file.Entries.ToDictionary(e => e.Name, _ => file, StringComparer.Ordinal));
        }
        throw new DiffusionCacheException(
            $"{modelDir}: no weights: neither {Path.GetFileName(single)} nor {Path.GetFileName(index)} exists");
    }

    /// <summary>A stem or variant becomes part of a file name; a separator (or a dot in a variant) would let it name
    /// other files.</summary>
    private static void CheckNamePart(string value, string what)
    {
        ArgumentNullException.ThrowIfNull(value, what);
        if (value.Length == 0 || value.IndexOfAny(['/', '\\', '\0']) >= 0 || value.StartsWith('.') ||
            (what == "variant" && value.Contains('.')))
            throw new DiffusionCacheException($"invalid {what} '{value}'");
    }

    private static DiffusersWeights OpenSharded(string modelDir, string? variant, string indexPath)
    {
        var weightMap = ReadIndex(indexPath);

        // Resolve each distinct shard name once; different spellings of one file ("a", "./a") are one shard.
        var shardPathOf = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string shard in weightMap.Values.Distinct(StringComparer.Ordinal))
            shardPathOf[shard] = ResolveShard(indexPath, modelDir, shard);

        var files = new List<SafetensorsFile>();
        try
        {
            var fileAt = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
            foreach (string full in shardPathOf.Values.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal))
            {
                var file = SafetensorsFile.Open(full);
                files.Add(file);
                fileAt[full] = file;
            }

            var fileOf = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
            foreach (var (name, shard) in weightMap)
            {
                var file = fileAt[shardPathOf[shard]];
                if (!file.Contains(name))
                    throw new DiffusionCacheException($"{indexPath}: weight_map puts '{name}' in {shard}, which does not hold it");
                fileOf[name] = file;
            }
            // The reverse: a shard tensor the index does not assign to that shard is either unlisted or a second
            // copy of a tensor listed elsewhere; loading would silently ignore it, so the checkpoint is inconsistent.
            foreach (var file in files)
                foreach (var entry in file.Entries)
                    if (!fileOf.TryGetValue(entry.Name, out var owner) || owner != file)
                        throw new DiffusionCacheException(fileOf.ContainsKey(entry.Name)
                            ? $"{indexPath}: shard {Path.GetFileName(file.FilePath)} holds '{entry.Name}', which weight_map puts in {weightMap[entry.Name]}"
                            : $"{indexPath}: shard {Path.GetFileName(file.FilePath)} holds '{entry.Name}', which weight_map does not list");

            return new DiffusersWeights(modelDir, variant, indexPath, files, fileOf);
        }
        catch
        {
            foreach (var file in files) file.Dispose();
            throw;
        }
    }

    /// <summary>Reads <c>weight_map</c>. <c>metadata.total_size</c> is not checked: writers compute it differently
    /// (shared storage, padding), and the shards' own headers already say how large every tensor is.</summary>
    private static Dictionary<string, string> ReadIndex(string indexPath)
    {
        byte[] bytes;
        try
        {
            long length = new FileInfo(indexPath).Length;
            if (length > MaxIndexBytes)
                throw new DiffusionCacheException($"{indexPath}: index of {length} bytes is absurd (limit {MaxIndexBytes})");
            bytes = File.ReadAllBytes(indexPath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DiffusionCacheException($"{indexPath}: cannot read index: {e.Message}", e);
        }

        // Checked up front: System.Text.Json validates UTF-8 only when a string is read.
        if (!Utf8.IsValid(bytes)) throw new DiffusionCacheException($"{indexPath}: index is not valid UTF-8");
        try
        {
            using var doc = JsonDocument.Parse(bytes, new JsonDocumentOptions { MaxDepth = 16 });
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new DiffusionCacheException($"{indexPath}: index must be a JSON object");
            var maps = doc.RootElement.EnumerateObject().Where(p => p.Name == "weight_map").ToList();
            if (maps.Count > 1) throw new DiffusionCacheException($"{indexPath}: index has more than one 'weight_map'");
            if (maps.Count == 0 || maps[0].Value is not { ValueKind: JsonValueKind.Object } map)
                throw new DiffusionCacheException($"{indexPath}: index has no 'weight_map' object");
            var weightMap = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var item in map.EnumerateObject())
            {
                if (item.Value.ValueKind != JsonValueKind.String)
                    throw new DiffusionCacheException($"{indexPath}: weight_map entry '{item.Name}' is not a file name string");
                if (!weightMap.TryAdd(item.Name, item.Value.GetString()!))
                    throw new DiffusionCacheException($"{indexPath}: weight_map lists '{item.Name}' twice");
            }
            if (weightMap.Count == 0) throw new DiffusionCacheException($"{indexPath}: weight_map is empty");
            return weightMap;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            // InvalidOperationException: a \u escape that is a lone surrogate, met while reading a string.
            throw new DiffusionCacheException($"{indexPath}: index is not valid JSON ({e.Message})", e);
        }
    }

    /// <summary>The full path of a shard, which must be a file inside the model folder (index files come from
    /// downloads; a name like "../../x" or "/etc/x" must not make us open files elsewhere).</summary>
    private static string ResolveShard(string indexPath, string folder, string shard)
    {
        if (shard.Length == 0 || shard.Contains('\0') || shard.Contains('\\') || Path.IsPathRooted(shard))
            throw new DiffusionCacheException($"{indexPath}: shard name '{shard}' is not a relative file name");
        string full = Path.GetFullPath(Path.Combine(folder, shard));
        string inside = folder.EndsWith(Path.DirectorySeparatorChar) ? folder : folder + Path.DirectorySeparatorChar;
        if (!full.StartsWith(inside, StringComparison.Ordinal))
            throw new DiffusionCacheException($"{indexPath}: shard '{shard}' lies outside the model folder");
        if (!File.Exists(full))
            throw new DiffusionCacheException($"{indexPath}: shard file {shard} not found");
        return full;
    }

    /// <summary>Whether any of the files holds a tensor named <paramref name="name"/>.</summary>
    public bool Contains(string name) => _fileOf.ContainsKey(name);

    /// <summary>Where the tensor <paramref name="name"/> lies in its file, without reading it; throws
    /// <see cref="DiffusionCacheException"/> when no file holds it.</summary>
    public SafetensorsEntry Entry(string name) => FileOf(name).Entry(name);

    /// <summary>The safetensors file holding <paramref name="name"/>.</summary>
    public string FilePathOf(string name) => FileOf(name).FilePath;

    /// <summary>Reads a tensor, in its stored type unless <paramref name="dtype"/> is given (e.g. float32 for the
    /// weights of an fp16 variant, as diffusers upcasts them without a torch_dtype).</summary>
    public torch.Tensor Load(string name, torch.ScalarType? dtype = null, torch.Device? device = null) =>
        FileOf(name).Load(name, dtype, device);

    private SafetensorsFile FileOf(string name) =>
        _fileOf.TryGetValue(name, out var file) ? file
            : throw new DiffusionCacheException($"{ModelDir}: no weight named '{name}'");

    /// <summary>Closes every file. Tensors already loaded stay valid.</summary>
    public void Dispose()
    {
        foreach (var file in _files) file.Dispose();
    }
}
