using DiffusionCache.Pipelines.Conditioning;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Pipelines.Conditioning;

public sealed class TensorLruTests
{
    [Fact]
    public void ComputesOncePerKeyAndEvictsTheLeastRecentlyUsed()
    {
        using var lru = new TensorLru<string>(2);
        int computed = 0;
        Tensor Make(float v) { computed++; return full([2], v); }
        using (lru.GetOrAdd("a", () => Make(1))) { }
        using (lru.GetOrAdd("b", () => Make(2))) { }
        using (var again = lru.GetOrAdd("a", () => Make(99))) Assert.Equal(1f, again[0].item<float>());
        Assert.Equal(2, computed);
        using (lru.GetOrAdd("c", () => Make(3))) { }          // evicts "b", the least recently used
        Assert.Equal(2, lru.Count);
        using (var b = lru.GetOrAdd("b", () => Make(20))) Assert.Equal(20f, b[0].item<float>());
        Assert.Equal(4, computed);
        Assert.Equal((1, 4), (lru.Hits, lru.Misses));
    }

    [Fact]
    public void CallersOwnWhatTheyGet()
    {
        using var lru = new TensorLru<int>(4);
        var first = lru.GetOrAdd(1, () => ones(3));
        first.Dispose();
        first = lru.GetOrAdd(1, () => zeros(3));
        first.add_(5);                       // changing a returned clone does not change the store
        first.Dispose();
        using var third = lru.GetOrAdd(1, () => zeros(3));
        Assert.Equal(1f, third.sum().item<float>() / 3);
    }
}
