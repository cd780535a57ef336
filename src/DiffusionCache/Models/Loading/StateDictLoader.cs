using DiffusionCache.Formats;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Models.Loading;

/// <summary>
/// Copies a checkpoint into a module strictly, like diffusers' <c>load_state_dict(strict=True)</c>: every module
/// parameter must be in the checkpoint with the same shape, and every checkpoint tensor must be a parameter.
/// Tensors are streamed one at a time and converted to the parameter's type, so peak memory is the model plus one
/// tensor.
/// </summary>
public static class StateDictLoader
{
    /// <summary>Copies every tensor of <paramref name="source"/> into the parameter or buffer of the same name,
    /// converted to its type and device, without gradients. Nothing is copied unless all names and shapes
    /// match.</summary>
    /// <param name="module">The model to fill; its parameters are named as in the checkpoint.</param>
    /// <param name="source">The checkpoint's tensors; the caller owns it.</param>
    /// <exception cref="CheckpointMismatchException">Names or shapes differ.</exception>
    public static void Load(nn.Module module, ITensorSource source)
    {
        var targets = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (name, p) in module.named_parameters()) targets[name] = p;
        foreach (var (name, b) in module.named_buffers()) targets[name] = b;

        // A renamed source (a single-file checkpoint) names each tensor's file key too: that is the name its owner knows.
        Func<string, string> show = source is IRenamedTensorSource renamed
            ? name => renamed.FileKey(name) is string key && key != name ? $"{name} (file key {key})" : name
            : name => name;
        var names = source.Names.ToHashSet(StringComparer.Ordinal);
        var missing = targets.Keys.Where(k => !names.Contains(k)).Order(StringComparer.Ordinal).ToList();
        var unexpected = names.Where(k => !targets.ContainsKey(k)).Order(StringComparer.Ordinal).ToList();
        var mismatched = targets.Where(t => names.Contains(t.Key))
            .Select(t => (t.Key, Expected: t.Value.shape, Found: source.Entry(t.Key).Shape))
            .Where(x => !x.Expected.SequenceEqual(x.Found))
            .Select(x => $"{show(x.Key)}: checkpoint [{string.Join(",", x.Found)}], model [{string.Join(",", x.Expected)}]")
            .ToList();
        if (missing.Count + unexpected.Count + mismatched.Count > 0)
            throw new CheckpointMismatchException(source.Description, missing, unexpected, mismatched, show);

        using var noGrad = no_grad();
        foreach (var (name, target) in targets)
        {
            using var value = source.Load(name, target.dtype, target.device);
            target.copy_(value);
        }
    }
}

/// <summary>A checkpoint whose tensors do not match the model built from its config, listing every difference.</summary>
/// <param name="source">The checkpoint's description (file or folder), which the message starts with.</param>
/// <param name="missing">Model tensors the checkpoint lacks.</param>
/// <param name="unexpected">Checkpoint tensors the model has no place for.</param>
/// <param name="mismatched">One line per tensor whose shapes differ, already written for the message.</param>
/// <param name="show">Writes a tensor name for the message (e.g. with the file key it has in a single-file
/// checkpoint); the lists keep the names the model uses. Null writes names as they are.</param>
public sealed class CheckpointMismatchException(string source, IReadOnlyList<string> missing,
    IReadOnlyList<string> unexpected, IReadOnlyList<string> mismatched, Func<string, string>? show = null)
    : DiffusionCacheException(Describe(source, missing.Select(show ?? (n => n)).ToList(), unexpected.Select(show ?? (n => n)).ToList(), mismatched))
{
    /// <summary>Names of model parameters and buffers the checkpoint lacks, as the model names them.</summary>
    public IReadOnlyList<string> Missing { get; } = missing;
    /// <summary>Names of checkpoint tensors the model has no parameter or buffer for.</summary>
    public IReadOnlyList<string> Unexpected { get; } = unexpected;
    /// <summary>One line per tensor whose shapes differ: its name, the checkpoint's shape and the model's.</summary>
    public IReadOnlyList<string> ShapeMismatches { get; } = mismatched;

    private static string Describe(string source, IReadOnlyList<string> missing, IReadOnlyList<string> unexpected,
        IReadOnlyList<string> mismatched)
    {
        var parts = new List<string>();
        if (missing.Count > 0) parts.Add($"{missing.Count} missing ({List(missing)})");
        if (unexpected.Count > 0) parts.Add($"{unexpected.Count} unexpected ({List(unexpected)})");
        if (mismatched.Count > 0) parts.Add($"{mismatched.Count} with wrong shape ({List(mismatched)})");
        return $"{source}: checkpoint does not match the model: {string.Join("; ", parts)}";
    }

    private static string List(IReadOnlyList<string> items) =>
        string.Join(", ", items.Take(5)) + (items.Count > 5 ? $", ... {items.Count - 5} more" : "");
}
