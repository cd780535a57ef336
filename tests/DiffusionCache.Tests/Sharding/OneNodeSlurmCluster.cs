using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using DiffusionCache.Tests.TestSupport;

namespace DiffusionCache.Tests.Sharding;

/// <summary>
/// A real one-node Slurm cluster in a temporary folder: munged (a fresh key), slurmctld and slurmd in the foreground
/// as child processes, a <c>slurm.conf</c> naming this host (127.0.0.1) and its cores, free ports. Debian's
/// <c>slurm-wlm</c> and <c>munge</c> are installed with apt-get when missing (root). Anything that stops the
/// cluster from coming up throws: the test fails loudly instead of skipping. <see cref="Dispose"/> cancels the
/// jobs it ran and ends the daemons by their PIDs, also after a failure.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class OneNodeSlurmCluster : IDisposable
{
    private readonly List<Process> _daemons = [];
    private readonly List<string> _jobs = [];

    /// <summary>The cluster's folder (config, state, logs, munge socket).</summary>
    public string Folder { get; }
    /// <summary>The <c>slurm.conf</c>; clients find it through <c>SLURM_CONF</c>.</summary>
    public string Config => Path.Combine(Folder, "slurm.conf");
    /// <summary>The node's name.</summary>
    public string Node { get; }

    public OneNodeSlurmCluster()
    {
        EnsureInstalled();
        Folder = Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "dc-slurm-" + Guid.NewGuid().ToString("N")[..12])).FullName;
        Node = Run("hostname", "-s").Trim();
        try
        {
            Start();
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    private static void EnsureInstalled()
    {
        if (File.Exists("/usr/sbin/slurmctld") && File.Exists("/usr/sbin/slurmd") && File.Exists("/usr/sbin/munged") && File.Exists("/usr/bin/sbatch")) return;
        if (!Environment.IsPrivilegedProcess)
            throw new InvalidOperationException("Slurm is not installed and this is not root: run 'apt-get install -y slurm-wlm munge' first");
        var env = new Dictionary<string, string> { ["DEBIAN_FRONTEND"] = "noninteractive" };
        if (RunStatus("apt-get", env, "install", "-y", "-q", "--no-install-recommends", "slurm-wlm", "munge") != 0)
        {
            Run("apt-get", env, "update", "-q");
            Run("apt-get", env, "install", "-y", "-q", "--no-install-recommends", "slurm-wlm", "munge");
        }
    }

    private void Start()
    {
        foreach (var d in new[] { "munge", "state", "spool", "log" }) Directory.CreateDirectory(Path.Combine(Folder, d));
        File.SetUnixFileMode(Folder, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute
            | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        string key = Path.Combine(Folder, "munge", "munge.key");
        File.WriteAllBytes(key, System.Security.Cryptography.RandomNumberGenerator.GetBytes(1024));
        File.SetUnixFileMode(key, UnixFileMode.UserRead);
        string socket = Path.Combine(Folder, "munge", "munge.sock");
        Daemon("/usr/sbin/munged", "-F", "--force", $"--key-file={key}", $"--socket={socket}",
            $"--pid-file={Path.Combine(Folder, "munge", "munged.pid")}", $"--log-file={Path.Combine(Folder, "log", "munged.log")}",
            $"--seed-file={Path.Combine(Folder, "munge", "seed")}");
        WaitFor(() => File.Exists(socket), "munged's socket", 20);

        File.WriteAllText(Path.Combine(Folder, "plugstack.conf"), "");
        File.WriteAllText(Config, $"""
            ClusterName=dctest
            SlurmctldHost={Node}(127.0.0.1)
            SlurmctldPort={FreePort()}
            SlurmdPort={FreePort()}
            SlurmUser=root
            SlurmdUser=root
            AuthType=auth/munge
            CredType=cred/munge
            AuthInfo=socket={socket}
            StateSaveLocation={Folder}/state
            SlurmdSpoolDir={Folder}/spool
            SlurmctldPidFile={Folder}/slurmctld.pid
            SlurmdPidFile={Folder}/slurmd.pid
            SlurmctldLogFile={Folder}/log/slurmctld.log
            SlurmdLogFile={Folder}/log/slurmd.log
            PlugStackConfig={Folder}/plugstack.conf
            ProctrackType=proctrack/linuxproc
            TaskPlugin=task/none
            SelectType=select/cons_tres
            SelectTypeParameters=CR_Core
            MpiDefault=none
            ReturnToService=2
            SchedulerType=sched/builtin
            AccountingStorageType=accounting_storage/none
            JobCompType=jobcomp/none
            JobAcctGatherType=jobacct_gather/none
            InactiveLimit=0
            KillWait=5
            MinJobAge=600
            NodeName={Node} NodeAddr=127.0.0.1 CPUs={Environment.ProcessorCount} State=UNKNOWN
            PartitionName=debug Nodes={Node} Default=YES MaxTime=INFINITE State=UP

            """);
        Daemon("/usr/sbin/slurmctld", "-D", "-i", "-f", Config);
        Daemon("/usr/sbin/slurmd", "-D", "-f", Config, "-N", Node);
        WaitFor(() => RunStatus("sinfo", Env, out var o, "-h", "-o", "%T") == 0 && o.Trim() == "idle", "the node to come up idle", 60);
    }

    /// <summary>The environment clients need (<c>SLURM_CONF</c>).</summary>
    public Dictionary<string, string> Env => new() { ["SLURM_CONF"] = Config };

    /// <summary>Remembers a job so that <see cref="Dispose"/> cancels it if it is still there.</summary>
    public void Track(string jobId) => _jobs.Add(jobId);

    /// <summary>The state of a job (<c>COMPLETED</c>, <c>PENDING</c>, <c>FAILED</c>, ...; an array job's tasks
    /// joined with commas).</summary>
    public string State(string jobId)
    {
        RunStatus("scontrol", Env, out var output, "show", "job", jobId);
        return string.Join(",", output.Split([' ', '\n'], StringSplitOptions.RemoveEmptyEntries)
            .Where(w => w.StartsWith("JobState=", StringComparison.Ordinal)).Select(w => w["JobState=".Length..]));
    }

    /// <summary>Waits until a job has ended; throws with its state and the logs' tail unless it completed.</summary>
    public void WaitCompleted(string jobId, TimeSpan timeout, string logFolder)
    {
        var clock = Stopwatch.StartNew();
        string state = "";
        while (clock.Elapsed < timeout)
        {
            state = State(jobId);
            if (state.Length > 0 && state.Split(',').All(s => s is "COMPLETED")) return;
            if (state.Split(',').Any(s => s is "FAILED" or "CANCELLED" or "TIMEOUT" or "NODE_FAIL" or "OUT_OF_MEMORY" or "BOOT_FAIL" or "DEADLINE"))
                break;
            Thread.Sleep(1000);
        }
        string logs = Directory.Exists(logFolder)
            ? string.Join("\n", Directory.EnumerateFiles(logFolder).Select(f => $"--- {f}\n{Tail(File.ReadAllText(f))}")) : "(no logs)";
        throw new TimeoutException($"job {jobId} ended as '{state}' after {clock.Elapsed.TotalSeconds:0} s\n{logs}\n--- slurmctld\n{Tail(ReadOrEmpty(Path.Combine(Folder, "log", "slurmctld.log")))}");
    }

    private static string Tail(string text) => text.Length > 3000 ? text[^3000..] : text;
    private static string ReadOrEmpty(string path) => File.Exists(path) ? File.ReadAllText(path) : "";

    private void Daemon(string file, params string[] args)
    {
        var info = new ProcessStartInfo(file) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) info.ArgumentList.Add(a);
        info.Environment["SLURM_CONF"] = Config;
        var process = Process.Start(info) ?? throw new InvalidOperationException($"could not start {file}");
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _daemons.Add(process);
        Thread.Sleep(200);
        if (process.HasExited) throw new InvalidOperationException($"{file} exited at once with {process.ExitCode}; logs in {Folder}/log");
    }

    private void WaitFor(Func<bool> ready, string what, int seconds)
    {
        var clock = Stopwatch.StartNew();
        while (!ready())
        {
            foreach (var d in _daemons)
                if (d.HasExited) throw new InvalidOperationException($"a daemon (pid {d.Id}) exited with {d.ExitCode} while waiting for {what}; logs in {Folder}/log:\n{Tail(ReadOrEmpty(Path.Combine(Folder, "log", "slurmctld.log")))}\n{Tail(ReadOrEmpty(Path.Combine(Folder, "log", "slurmd.log")))}");
            if (clock.Elapsed.TotalSeconds > seconds)
                throw new TimeoutException($"timed out after {seconds} s waiting for {what}; logs in {Folder}/log:\n{Tail(ReadOrEmpty(Path.Combine(Folder, "log", "slurmctld.log")))}\n{Tail(ReadOrEmpty(Path.Combine(Folder, "log", "slurmd.log")))}");
            Thread.Sleep(250);
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static string Run(string file, params string[] args) => Run(file, new Dictionary<string, string>(), args);

    private static string Run(string file, Dictionary<string, string> env, params string[] args)
    {
        int rc = RunStatus(file, env, out var output, args);
        if (rc != 0) throw new InvalidOperationException($"{file} {string.Join(' ', args)} failed ({rc}):\n{Tail(output)}");
        return output;
    }

    private static int RunStatus(string file, Dictionary<string, string> env, params string[] args) => RunStatus(file, env, out _, args);

    /// <summary>Runs a program to its end; stdout and stderr together in <paramref name="output"/>.</summary>
    public static int RunStatus(string file, Dictionary<string, string> env, out string output, params string[] args)
    {
        var info = new ProcessStartInfo(file) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) info.ArgumentList.Add(a);
        foreach (var (k, v) in env) info.Environment[k] = v;
        using var process = Process.Start(info) ?? throw new InvalidOperationException($"could not start {file}");
        var stderr = process.StandardError.ReadToEndAsync();
        string stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        output = stdout + stderr.Result;
        return process.ExitCode;
    }

    /// <summary>Cancels the tracked jobs, then ends slurmd, slurmctld and munged by their PIDs (in that order) and
    /// removes the folder.</summary>
    public void Dispose()
    {
        if (_jobs.Count > 0 && _daemons.Count == 3 && _daemons.All(d => !d.HasExited))
        {
            try { RunStatus("scancel", Env, [.. _jobs]); Thread.Sleep(1000); }
            catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception) { }
        }
        for (int i = _daemons.Count - 1; i >= 0; i--)
        {
            var d = _daemons[i];
            try
            {
                if (!d.HasExited)
                {
                    RunStatus("kill", [], "-TERM", d.Id.ToString(System.Globalization.CultureInfo.InvariantCulture));   // this PID only
                    if (!d.WaitForExit(10_000)) d.Kill();
                    d.WaitForExit(10_000);
                }
            }
            catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception) { }
            d.Dispose();
        }
        _daemons.Clear();
        try { Directory.Delete(Folder, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
