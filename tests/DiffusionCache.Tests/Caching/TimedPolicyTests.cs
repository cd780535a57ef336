using DiffusionCache.Caching;
using DiffusionCache.Caching.Adaptive;
using DiffusionCache.Models.Seam;
using static DiffusionCache.Tests.Caching.BlockCaching.BlockCacheFixtures;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Caching;

/// <summary>The measuring wrapper changes nothing a policy does, and counts the policy's own time but never the
/// model's compute, also when block calls nest.</summary>
public sealed class TimedPolicyTests
{
    [Fact]
    public void A_wrapped_policy_samples_bitwise_the_same_with_the_same_decisions()
    {
        using var unet = Model();
        using var s = Scheduler();
        var request = Request(8);
        using var plain = new OnlineBlockCachePolicy(unet, new OnlineBlockCacheOptions(0.3));
        using var timed = new TimedPolicy(new OnlineBlockCachePolicy(unet, new OnlineBlockCacheOptions(0.3)));
        using var a = CachedSampling.Sample(unet, s, request, plain);
        using var b = CachedSampling.Sample(unet, s, request, timed);
        Assert.True(BitwiseEqual(a, b));
        Assert.Equal(plain.Statistics.TotalReused, timed.Statistics.TotalReused);
        Assert.True(timed.Statistics.TotalReused > 0);
        Assert.Equal(plain.Name, timed.Name);
        Assert.True(timed.OwnTime > TimeSpan.Zero);
        timed.Reset();
        Assert.Equal(TimeSpan.Zero, timed.OwnTime);
    }

    /// <summary>Spends 20 ms of its own on every call, around the compute it asks for.</summary>
    private sealed class SlowPolicy : ICachePolicy
    {
        public string Name => "slow";
        public CacheStatistics Statistics { get; } = new();
        public BlockOutput Run(BlockCall call, Func<BlockOutput> compute)
        {
            Thread.Sleep(10);
            var output = compute();
            Thread.Sleep(10);
            return output;
        }
        public void Dispose() { }
    }

    [Fact]
    public void Own_time_leaves_out_the_compute_also_of_nested_calls()
    {
        using var timed = new TimedPolicy(new SlowPolicy());
        using var x = zeros(1);
        var site = new BlockSite("outer", BlockKind.Model);
        // outer call -> compute (400 ms) containing an inner call -> compute (400 ms): the policy's own time is 2 x 20 ms
        using var output = timed.Run(new BlockCall(site, x), () =>
        {
            Thread.Sleep(400);
            return timed.Run(new BlockCall(site with { Path = "inner" }, x), () =>
            {
                Thread.Sleep(400);
                return new BlockOutput(x.clone());
            });
        }).Hidden;
        Assert.InRange(timed.OwnTime.TotalMilliseconds, 40, 40 + 350);   // sleeps overshoot a little, never by a compute
    }
}
