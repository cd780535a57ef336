using System.Text.Json;
using DiffusionCache.Formats.Safetensors;
using DiffusionCache.Models.Loading;
using static TorchSharp.torch;

namespace DiffusionCache.Evaluation;

/// <summary>A shipped metric network: <c>config.json</c> (whose <c>_class_name</c> names the architecture) +
/// <c>model.safetensors</c> (parameters and, for BatchNorm networks, running statistics).</summary>
public static class ClassifierFolder
{
    /// <summary>Where the CLI looks for the metric network (<see cref="FashionClassifier"/>), relative to the
    /// working directory.</summary>
    public const string DefaultPath = "models/fashion-classifier";
    /// <summary>Where the CLI looks for the second, independent metric network (<see cref="FashionResNet"/>).</summary>
    public const string SecondDefaultPath = "models/fashion-resnet";
    private const string Stem = "model";

    /// <summary>Writes <paramref name="model"/>'s <c>config.json</c> and <c>model.safetensors</c> (parameters and
    /// buffers) into <paramref name="dir"/>, replacing the folder as a whole (built beside it, then moved into
    /// place).</summary>
    public static void Save(string dir, MetricNetwork model)
    {
        string full = Path.GetFullPath(dir);
        string parent = Path.GetDirectoryName(full)!;
        string temp = Path.Combine(parent, $".{Path.GetFileName(full)}.tmp-{Environment.ProcessId}");
        if (Directory.Exists(temp)) Directory.Delete(temp, true);
        Directory.CreateDirectory(temp);
        try
        {
            File.WriteAllText(Path.Combine(temp, "config.json"), model.ToConfigJson());
            var tensors = model.named_parameters().Select(p => KeyValuePair.Create(p.name, (Tensor)p.parameter))
                .Concat(model.named_buffers().Select(b => KeyValuePair.Create(b.name, b.buffer)));
            SafetensorsWriter.Write(Path.Combine(temp, Stem + ".safetensors"), tensors,
                new Dictionary<string, string> { ["format"] = "pt" });
            if (Directory.Exists(full)) Directory.Delete(full, true);
            Directory.Move(temp, full);
        }
        catch
        {
            if (Directory.Exists(temp)) Directory.Delete(temp, true);
            throw;
        }
    }

    /// <summary>Loads the <see cref="FashionClassifier"/> from <paramref name="dir"/> as float32 on the CPU, in eval
    /// mode; the caller disposes it.</summary>
    /// <exception cref="DiffusionCacheException">The folder has no <c>config.json</c> (the message says how to train
    /// one), holds another architecture, or its weights do not fit.</exception>
    public static FashionClassifier Load(string dir) =>
        LoadNetwork(dir) as FashionClassifier ?? throw new DiffusionCacheException($"{dir}: not a {nameof(FashionClassifier)}");

    /// <summary>Loads whichever metric network <paramref name="dir"/> holds (by its config's <c>_class_name</c>:
    /// <see cref="FashionClassifier"/> or <see cref="FashionResNet"/>) as float32 on the CPU, in eval mode; the
    /// caller disposes it.</summary>
    /// <exception cref="DiffusionCacheException">No <c>config.json</c>, an unknown <c>_class_name</c>, or weights
    /// that do not fit.</exception>
    public static MetricNetwork LoadNetwork(string dir)
    {
        string config = Path.Combine(dir, "config.json");
        if (!File.Exists(config))
            throw new DiffusionCacheException($"{dir}: metric network not found (train it with 'diffcache train classifier' or 'classifier-b')");
        string? className;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(config));
            className = doc.RootElement.TryGetProperty("_class_name", out var c) ? c.GetString() : null;
        }
        catch (JsonException e)
        {
            throw new DiffusionCacheException($"{config}: {e.Message}");
        }
        MetricNetwork model = className switch
        {
            nameof(FashionClassifier) or null => new FashionClassifier(),
            nameof(FashionResNet) => new FashionResNet(),
            _ => throw new DiffusionCacheException($"{config}: unknown metric network '{className}' (expected {nameof(FashionClassifier)} or {nameof(FashionResNet)})"),
        };
        model = ComponentLoader.LoadWeights(model, dir, null, ScalarType.Float32, null, Stem);
        model.eval();
        return model;
    }
}
