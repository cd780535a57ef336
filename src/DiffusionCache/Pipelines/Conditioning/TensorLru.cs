using static TorchSharp.torch;

namespace DiffusionCache.Pipelines.Conditioning;

/// <summary>A small least-recently-used store of tensors it owns (one or several per key): evicted or cleared tensors
/// are disposed. Callers get clones, so what they dispose never touches the store.</summary>
/// <typeparam name="TKey">The lookup key (compared with its default equality).</typeparam>
/// <param name="capacity">The most keys kept; beyond it the least recently used is evicted. Below 1 nothing is
/// stored and every lookup computes.</param>
public sealed class TensorLru<TKey>(int capacity) : IDisposable where TKey : notnull
{
    private readonly LinkedList<(TKey Key, Tensor[] Value)> _order = new();
    private readonly Dictionary<TKey, LinkedListNode<(TKey Key, Tensor[] Value)>> _nodes = new();

    /// <summary>The number of keys stored (at most the capacity).</summary>
    public int Count => _nodes.Count;
    /// <summary>Lookups answered from the store so far.</summary>
    public int Hits { get; private set; }
    /// <summary>Lookups that had to compute their value so far.</summary>
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

    /// <summary>Removes and disposes every stored tensor; <see cref="Hits"/> and <see cref="Misses"/> stay.</summary>
    public void Clear()
    {
        foreach (var (_, value) in _order) foreach (var t in value) t.Dispose();
        _order.Clear();
        _nodes.Clear();
    }

    /// <summary>Disposes every stored tensor (<see cref="Clear"/>).</summary>
    public void Dispose() => Clear();
}
