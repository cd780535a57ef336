namespace DiffusionCache.Analysis;

/// <summary>Resident memory of this process, from /proc where available (it includes native libtorch
/// allocations, which the .NET GC does not see).</summary>
public static class ProcessMemory
{
    /// <summary>Peak resident set size in MiB (VmHWM), or the current working set where /proc is missing.</summary>
    public static double PeakRssMb() => ReadStatusKb("VmHWM:") is long kb ? kb / 1024.0 : Environment.WorkingSet / 1048576.0;

    /// <summary>Resets the peak (VmHWM) to the current RSS, so a later <see cref="PeakRssMb"/> covers only what
    /// follows. Linux only; returns false elsewhere.</summary>
    public static bool ResetPeak()
    {
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>Returns memory the C allocator keeps after frees to the system (glibc), so that a measurement that
    /// follows starts from what is really in use. No-op where unavailable.</summary>
    public static void ReleaseFreedMemory()
    {
        try { MallocTrim(UIntPtr.Zero); }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "malloc_trim")]
    private static extern int MallocTrim(UIntPtr pad);

    /// <summary>Current resident set size in MiB (VmRSS), or the current working set where /proc is missing.</summary>
    public static double CurrentRssMb() => ReadStatusKb("VmRSS:") is long kb ? kb / 1024.0 : Environment.WorkingSet / 1048576.0;

    private static long? ReadStatusKb(string key)
    {
        const string status = "/proc/self/status";
        if (!File.Exists(status)) return null;
        foreach (var line in File.ReadLines(status))
        {
            if (!line.StartsWith(key, StringComparison.Ordinal)) continue;
            var parts = line[key.Length..].Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries);
            return long.TryParse(parts[0], out long kb) ? kb : null;
        }
        return null;
    }
}
