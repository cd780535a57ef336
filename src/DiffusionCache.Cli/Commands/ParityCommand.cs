using System.CommandLine;
using System.Globalization;
using DiffusionCache.Parity;

namespace DiffusionCache.Cli.Commands;

/// <summary><c>diffcache parity DIR</c>: runs every case of a golden folder against our implementation, in float32 on
/// the CPU (the references are float32 and the tolerances tight); <c>--threads</c> is its only runtime option.</summary>
internal static class ParityCommand
{
    public static Command Create()
    {
        var dir = new Argument<string>("dir") { Description = "golden folder with a manifest.json (kind unet, schedulers, ...)" };
        var command = new Command("parity", "check our implementation against a folder of reference results; always float32 on the CPU " +
            "(the references are float32 tensors compared at tight tolerances), so of the runtime options only --threads applies") { dir };
        var runtime = new RuntimeOptions();
        runtime.AddThreadsTo(command);
        command.SetAction(parse => CommandRunner.Run(() =>
        {
            runtime.ApplyThreads(parse);
            return Execute(parse.GetValue(dir)!);
        }));
        return command;
    }

    private static int Execute(string dir)
    {
        using var folder = GoldenFolder.Open(dir);
        var suite = ParitySuites.For(folder.Kind);
        int passed = 0, failed = 0;
        foreach (var r in suite.Run(folder))
        {
            string error = double.IsFinite(r.MaxAbsError) ? r.MaxAbsError.ToString("0.00e+00", CultureInfo.InvariantCulture) : "inf";
            Console.WriteLine($"{r.CaseId}  max_abs_err={error}  {(r.Passed ? "pass" : "FAIL")}{(r.Detail is null ? "" : "  " + r.Detail)}");
            if (r.Passed) passed++; else failed++;
        }
        Console.WriteLine($"{passed} passed, {failed} failed");
        return failed == 0 && passed > 0 ? 0 : 1;
    }
}
