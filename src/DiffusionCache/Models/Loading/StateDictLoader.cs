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
/// <paramref name="show"/> writes a tensor name for the message (e.g. with the file key it has in a single-file
/// checkpoint); the lists keep the names the model uses.
public sealed class CheckpointMismatchException(string source, IReadOnlyList<string> missing,
    IReadOnlyList<string> unexpected, IReadOnlyList<string> mismatched, Func<string, string>? show = null)
    : DiffusionCacheException(Describe(source, missing.Select(show ?? (n => n)).ToList(), unexpected.Select(show ?? (n => n)).ToList(), mismatched))
{
    public IReadOnlyList<string> Missing { get; } = missing;
    public IReadOnlyList<string> Unexpected { get; } = unexpected;
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
