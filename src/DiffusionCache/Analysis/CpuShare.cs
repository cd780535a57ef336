using System.Diagnostics;

namespace DiffusionCache.Analysis;

/// <summary>
/// How much of its threads' time this process got over a stretch of wall time: process CPU time / (wall time ×
/// threads). Near 1 on an otherwise idle machine (libtorch's threads keep their cores busy); well below when another
/// process competes for the cores, and then timings of that stretch say little.
/// </summary>
public sealed class CpuShare
{
    private readonly Func<TimeSpan> _cpuTime;
    private readonly TimeProvider _clock;
    private readonly long _wallStart;
    private readonly TimeSpan _cpuStart;

    /// <summary>Measures this process from now on.</summary>
    public CpuShare() : this(() => Process.GetCurrentProcess().TotalProcessorTime, TimeProvider.System) { }

    /// <summary>Measures from now on with the given sources of CPU and wall time.</summary>
    /// <param name="cpuTime">the CPU time consumed so far (tests give a fake one).</param>
    /// <param name="clock">the source of wall time (tests give a fake one).</param>
    public CpuShare(Func<TimeSpan> cpuTime, TimeProvider clock)
    {
        _cpuTime = cpuTime;
        _clock = clock;
        _wallStart = clock.GetTimestamp();
        _cpuStart = cpuTime();
    }

    /// <summary>The share since this meter was made, for <paramref name="threads"/> compute threads (at most the
    /// processor count); 1 when no wall time has passed.</summary>
    public double Share(int threads)
    {
        double wall = _clock.GetElapsedTime(_wallStart).TotalSeconds;
        if (wall <= 0) return 1;
        int usable = Math.Max(1, Math.Min(threads, Environment.ProcessorCount));
        return (_cpuTime() - _cpuStart).TotalSeconds / (wall * usable);
    }
}
