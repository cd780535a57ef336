using DiffusionCache.Models.Seam;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Parity;

/// <summary>A seam hook that keeps a copy of chosen blocks' outputs, named like the golden files:
/// <c>down_blocks.1</c> (hidden state) and <c>down_blocks.1.res.k</c> (its k-th skip tensor).</summary>
/// <param name="wanted">The names to keep; other outputs pass through untouched.</param>
public sealed class BlockRecorder(IReadOnlySet<string> wanted) : IBlockHook, IDisposable
{
    private readonly Dictionary<string, Tensor> _recorded = new(StringComparer.Ordinal);

    /// <summary>Detached copies of the wanted outputs by name; a block that runs again replaces its copy. The copies
    /// stay owned by the recorder and are freed by <see cref="Dispose"/>.</summary>
    public IReadOnlyDictionary<string, Tensor> Recorded => _recorded;

    /// <summary>Computes the block and keeps copies of its wanted outputs; returns the output unchanged.</summary>
    public BlockOutput Run(BlockCall call, Func<BlockOutput> compute)
    {
        var output = compute();
        Keep(call.Path, output.Hidden);
        for (int k = 0; k < output.Skips.Count; k++) Keep($"{call.Path}.res.{k}", output.Skips[k]);
        return output;
    }

    private void Keep(string name, Tensor t)
    {
        if (!wanted.Contains(name)) return;
        if (_recorded.Remove(name, out var old)) old.Dispose();
        _recorded[name] = t.detach().clone().DetachFromDisposeScope();
    }

    /// <summary>Frees the recorded copies and empties <see cref="Recorded"/>.</summary>
    public void Dispose()
    {
        foreach (var t in _recorded.Values) t.Dispose();
        _recorded.Clear();
    }
}
