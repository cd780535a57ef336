using static TorchSharp.torch;

namespace DiffusionCache.Pipelines.Conditioning;

/// <summary>A small least-recently-used store of tensors it owns (one or several per key): evicted or cleared tensors
/// are disposed. Callers get clones, so what they dispose never touches the store.</summary>
public sealed class TensorLru<TKey>(int capacity) : IDisposable where TKey : notnull
{
    private readonly LinkedList<(TKey Key, Tensor[] Value)> _order = new();
    private readonly Dictionary<TKey, LinkedListNode<(TKey Key, Tensor[] Value)>> _nodes = new();

    public int Count => _nodes.Count;
    public int Hits { get; private set; }
    public int Misses { get; private set; }

    /// <summary>A clone of the stored value for <paramref name="key"/>, computing and storing it on a miss.</summary>
    public Tensor GetOrAdd(TKey key, Func<Tensor> compute) => GetOrAdd(key, () => [compute()])[0];

    /// <summary>Clones of the stored values for <paramref name="key"/>, computing and storing them on a miss.</summary>
    public Tensor[] GetOrAdd(TKey key, Func<Tensor[]> compute)
    {
        if (_nodes.TryGetValue(key, out var node))
        {
            Hits++;
            _order.Remove(node);
            _order.AddFirst(node);
            return node.Value.Value.Select(t => t.clone()).ToArray();
        }
        Misses++;
        var value = compute();
        if (capacity < 1) return value;
        var stored = value.Select(t => t.detach().clone().DetachFromDisposeScope()).ToArray();
        _nodes[key] = _order.AddFirst((key, stored));
        while (_nodes.Count > capacity)
        {
            var last = _order.Last!;
            _order.RemoveLast();
            _nodes.Remove(last.Value.Key);
            foreach (var t in last.Value.Value) t.Dispose();
        }
        return value;
    }

    public void Clear()
    {
        foreach (var (_, value) in _order) foreach (var t in value) t.Dispose();
        _order.Clear();
        _nodes.Clear();
    }

    public void Dispose() => Clear();
}
