using DiffusionCache.Cli.Reporting;
using DiffusionCache.Tests.TestSupport;

namespace DiffusionCache.Tests.Cli.Reporting;

/// <summary>The run-time ledger a resumable report keeps: every invocation adds its minutes, a missing ledger is
/// nothing spent yet, and a damaged one is refused saying how to start again.</summary>
public sealed class RunTimeLedgerTests
{
    [Fact]
    public void Invocations_add_up_across_runs()
    {
        using var dir = new TempFolder();
        string path = dir.File("state/run-time.json");
        Assert.Equal(new RunTimeLedger.Entry(0, 0), RunTimeLedger.Read(path));
        RunTimeLedger.Add(path, TimeSpan.FromMinutes(150));
        var total = RunTimeLedger.Add(path, TimeSpan.FromSeconds(90));
        Assert.Equal(2, total.Invocations);
        Assert.Equal(151.5, total.Minutes, 9);
        Assert.Equal(total, RunTimeLedger.Read(path));
        Assert.Single(Directory.GetFiles(dir.File("state")));   // written in place, no temporary file left beside it
    }

    [Fact]
    public void A_damaged_ledger_is_refused_with_how_to_start_again()
    {
        using var dir = new TempFolder();
        string path = dir.File("run-time.json");
        File.WriteAllText(path, "{ not json");
        var e = Assert.Throws<DiffusionCacheException>(() => RunTimeLedger.Add(path, TimeSpan.FromMinutes(1)));
        Assert.Contains("delete it", e.Message);
        Assert.Equal("{ not json", File.ReadAllText(path));
        Assert.Throws<ArgumentOutOfRangeException>(() => RunTimeLedger.Add(dir.File("other.json"), TimeSpan.FromMinutes(-1)));
    }
}
