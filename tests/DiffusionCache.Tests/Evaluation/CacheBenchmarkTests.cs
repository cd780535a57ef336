using DiffusionCache.Caching;
using DiffusionCache.Evaluation;
using DiffusionCache.Models.Seam;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Evaluation;

public class CacheBenchmarkTests
{
    /// <summary>A clock that moves only when the fake target says its work took time.</summary>
    private sealed class ManualClock : TimeProvider
    {
        public long Ticks;
        public override long TimestampFrequency => TimeSpan.TicksPerSecond;
        public override long GetTimestamp() => Ticks;
    }

    /// <summary>A policy that changes nothing; the fake target reads its presence and <see cref="Cost"/>.</summary>
    private sealed class HalfCostPolicy : ICachePolicy
    {
        public string Name => "half";
        public CacheStatistics Statistics { get; } = new();
        public BlockOutput Run(BlockCall call, Func<BlockOutput> compute) => compute();
        public void Dispose() { }
    }

    /// <summary>Each run costs steps x (1 ms uncached, 0.5 ms with a policy) x a machine speed factor that drifts
    /// by a factor of 3 during the benchmark; outputs depend only on the step count.</summary>
    private sealed class DriftingTarget(ManualClock clock) : IBenchTarget
    {
        public readonly List<(int Steps, bool Cached)> Calls = [];
        public int ImagesPerRun => 2;
        public double Range(Tensor reference) => 2.0;

        public Tensor Run(int steps, ICachePolicy? policy)
        {
            Calls.Add((steps, policy is not null));
            double slowdown = 1 + Calls.Count / 10.0;
            clock.Ticks += (long)(steps * (policy is null ? 1.0 : 0.5) * slowdown * TimeSpan.TicksPerMillisecond);
            return full([2, 1, 4, 4], steps == 50 ? 0.0f : 0.5f);
        }
    }

    private static IReadOnlyList<CacheConfiguration> Configurations() =>
    [
        new("no cache", "none", 50, null, 1.0),
        new("10 steps", "fewer-steps", 10, null, 5.0),
        new("half", "test", 50, () => new HalfCostPolicy(), 2.0),
    ];

    [Fact]
    public void Speedups_are_within_round_ratios_so_a_drifting_machine_does_not_bias_them()
    {
        var clock = new ManualClock();
        var rows = CacheBenchmark.Run(new DriftingTarget(clock), Configurations(), repeats: 5, clock: clock);

        // Work per call: 50, 10, 25 ms x slowdown; the slowdown changes between calls of one round, so ratios are
        // close to, not exactly, 5 and 2; medians of separate latencies would be off by the drift across rounds.
        Assert.Equal(1.0, rows[0].MeasuredSpeedup, 12);
        Assert.InRange(rows[1].MeasuredSpeedup, 4.5, 5.5);
        Assert.InRange(rows[2].MeasuredSpeedup, 1.8, 2.2);
        Assert.True(rows[2].MeasuredSpeedupLow <= rows[2].MeasuredSpeedup && rows[2].MeasuredSpeedup <= rows[2].MeasuredSpeedupHigh);
        Assert.Equal(2.0, rows[2].MacSpeedup);
    }

    [Fact]
    public void Every_configuration_warms_up_then_each_round_starts_at_the_next_configuration()
    {
        var clock = new ManualClock();
        var target = new DriftingTarget(clock);
        CacheBenchmark.Run(target, Configurations(), repeats: 3, clock: clock);

        int[] steps = [.. target.Calls.Select(c => c.Cached ? -c.Steps : c.Steps)];
        // warm-up: 50, 10, half; round 1 from config 0, round 2 from config 1, round 3 from config 2.
        Assert.Equal([50, 10, -50, 50, 10, -50, 10, -50, 50, -50, 50, 10], steps);
    }

    [Fact]
    public void Fidelity_compares_each_warm_up_output_with_the_uncached_one()
    {
        var clock = new ManualClock();
        var rows = CacheBenchmark.Run(new DriftingTarget(clock), Configurations(), repeats: 1, clock: clock);

        Assert.True(double.IsPositiveInfinity(rows[0].Psnr));
        Assert.Equal(1.0, rows[0].Ssim, 6);
        // 0.5 everywhere against 0 over a range of 2: PSNR = 10 log10(4 / 0.25).
        Assert.Equal(10 * Math.Log10(16), rows[1].Psnr, 6);
        Assert.True(double.IsPositiveInfinity(rows[2].Psnr));
        // Latency per image: the timed round's 6th call overall costs 25 ms x 1.6 for 2 images.
        Assert.Equal(20.0, rows[2].LatencyMsPerImage, 6);
    }

    [Fact]
    public void The_first_configuration_must_be_uncached_and_repeats_positive()
    {
        var clock = new ManualClock();
        var target = new DriftingTarget(clock);
        Assert.Throws<DiffusionCacheException>(() => CacheBenchmark.Run(target, Configurations().Skip(2).ToList(), 3, clock: clock));
        Assert.Throws<DiffusionCacheException>(() => CacheBenchmark.Run(target, Configurations(), 0, clock: clock));
        Assert.Empty(target.Calls);
    }
}
