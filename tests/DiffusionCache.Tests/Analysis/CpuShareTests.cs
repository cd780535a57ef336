using DiffusionCache.Analysis;

namespace DiffusionCache.Tests.Analysis;

public sealed class CpuShareTests
{
    private sealed class FakeClock : TimeProvider
    {
        public long Ticks { get; set; }
        public override long TimestampFrequency => TimeSpan.TicksPerSecond;
        public override long GetTimestamp() => Ticks;
    }

    [Fact]
    public void Share_is_cpu_time_over_wall_time_times_the_usable_threads()
    {
        var clock = new FakeClock();
        var cpu = TimeSpan.FromSeconds(5);
        var meter = new CpuShare(() => cpu, clock);
        Assert.Equal(1.0, meter.Share(1));                     // no wall time yet
        clock.Ticks += TimeSpan.FromSeconds(10).Ticks;
        cpu += TimeSpan.FromSeconds(10);
        Assert.Equal(1.0, meter.Share(1), 12);                  // one thread, busy all the time
        Assert.Equal(10.0 / (10 * Math.Min(2, Environment.ProcessorCount)), meter.Share(2), 12);
        Assert.Equal(meter.Share(Environment.ProcessorCount), meter.Share(1000), 12);   // no more threads than processors
    }

    [Fact]
    public void The_process_meter_sees_this_process_work()
    {
        var meter = new CpuShare();
        var until = DateTime.UtcNow.AddMilliseconds(200);
        double sink = 0;
        while (DateTime.UtcNow < until) sink += Math.Sqrt(sink + 1);
        Assert.True(meter.Share(1) > 0.3, $"share {meter.Share(1)} ({sink})");   // at least this thread's spin
    }
}
