using DiffusionCache.Cli;
using DiffusionCache.Tests.TestSupport;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Cli.Commands;

/// <summary><c>--device</c>, <c>--dtype</c> and <c>--threads</c> on every command that runs a model: accepted by each,
/// and a bad value fails with one line on stderr and a non-zero exit before any output is written. The thread count
/// the tests pass is the current one, so that running them changes nothing for tests running beside them.</summary>
public sealed class RuntimeOptionsTests
{
    private static string TinyUNet => Golden.Path("deepcache", "models", "tiny-sd-unet");
    private static string Embedded => Repository.Path("models", "fashion-ldm");
    private static string Threads => get_num_threads().ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Each command that runs a model, with arguments that would otherwise run it and the outputs it
    /// writes, under <paramref name="dir"/>.</summary>
    private static (string[] Args, string[] Outputs) Command(string name, string dir)
    {
        string F(string file) => Path.Combine(dir, file);
        return name switch
        {
            "profile" => (["profile", "--model", TinyUNet, "--steps", "2", "--conditions", "1", "--seeds", "1", "--out", F("profile")], [F("profile")]),
            "bench-cache" => (["bench-cache", "--model", TinyUNet, "--steps", "2", "--batch", "1", "--repeats", "1", "--deepcache", "2", "--deltas", "1",
                "--out", F("bench"), "--json", F("rows.json")], [F("bench"), F("rows.json")]),
            "bench" => (["bench", "--unet-config", TinyUNet, "--latent", "8", "--batch", "1", "--runs", "1", "--warmup", "0", "--json", F("bench.json")], [F("bench.json")]),
            "eval" => (["eval", "--model", Embedded, "--samples", "2", "--batch", "2", "--steps", "2", "--json", F("eval.json")], [F("eval.json")]),
            "train scaleshift" => (["train", "scaleshift", "--model", Embedded, "--denoising-steps", "20", "--steps", "1", "--batch", "1",
                "--checkpoints", F("ck"), "--out", F("adjustment.safetensors")], [F("ck"), F("adjustment.safetensors")]),
            "train vae" or "train unet" or "train classifier" => ([.. name.Split(' '), "--steps", "1", "--batch", "8", "--model", F("model"),
                "--checkpoints", F("ck")], [F("model"), F("ck")]),
            _ => throw new ArgumentException(name),
        };
    }

    public static TheoryData<string> Commands => new() { "profile", "bench-cache", "bench", "eval", "train scaleshift", "train vae", "train unet", "train classifier" };

    public static TheoryData<string, string, string, string> BadValues()
    {
        var data = new TheoryData<string, string, string, string>();
        foreach (var command in Commands)
        {
            data.Add(command, "--dtype", "fp8", "--dtype 'fp8'");
            data.Add(command, "--device", "tpu", "--device 'tpu'");
            data.Add(command, "--device", "cuda", "no CUDA backend");
            data.Add(command, "--threads", "0", "--threads must be at least 1");
            data.Add(command, "--convolutions", "fast", "--convolutions 'fast': expected libtorch, tuned or native");
        }
        foreach (var command in new[] { "profile", "bench-cache", "bench", "eval", "train scaleshift" })
            data.Add(command, "--dtype", "fp16", "--dtype fp16 needs a GPU");
        foreach (var command in new[] { "train vae", "train unet", "train classifier" })
        {
            data.Add(command, "--dtype", "bf16", "--dtype bf16: this command runs in float32 only");
            data.Add(command, "--dtype", "fp16", "--dtype fp16: this command runs in float32 only");
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Commands))]
    public void Every_command_that_runs_a_model_takes_the_three_options(string command)
    {
        using var dir = new TempFolder();
        var (args, _) = Command(command, dir.Path);
        var parse = CliApp.Create().Parse([.. args, "--device", "cpu", "--dtype", "fp32", "--threads", Threads, "--convolutions", "tuned"]);
        Assert.Empty(parse.Errors);
        Assert.Empty(CliApp.Create().Parse([.. args, "--device", "cpu", "--dtype", command.StartsWith("train ", StringComparison.Ordinal) &&
            command != "train scaleshift" ? "fp32" : "bf16"]).Errors);
    }

    [Theory]
    [MemberData(nameof(BadValues))]
    public void A_bad_value_fails_with_one_line_before_any_output(string command, string option, string value, string message)
    {
        using var dir = new TempFolder();
        var (args, outputs) = Command(command, dir.Path);
        var (rc, error) = RunCapturingErrors([.. args, option, value]);
        Assert.NotEqual(0, rc);
        var lines = error.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        // Other tests may write to stderr meanwhile: exactly one line is about this option, and it is the error.
        var mine = lines.Where(l => l.Contains(message, StringComparison.Ordinal)).ToList();
        Assert.Single(mine);
        Assert.StartsWith("error: ", mine[0]);
        Assert.DoesNotContain("   at ", error);   // no stack trace
        foreach (var output in outputs) Assert.False(File.Exists(output) || Directory.Exists(output), $"{output} was written");
        Assert.Empty(Directory.EnumerateFileSystemEntries(dir.Path));
    }

    [Fact]
    public void Parity_takes_threads_only_and_says_why()
    {
        string folder = Golden.Path("schedulers");
        Assert.Empty(CliApp.Create().Parse(["parity", folder, "--threads", Threads]).Errors);
        Assert.NotEmpty(CliApp.Create().Parse(["parity", folder, "--dtype", "bf16"]).Errors);
        Assert.NotEmpty(CliApp.Create().Parse(["parity", folder, "--device", "cpu"]).Errors);
        var parity = CliApp.Create().Subcommands.Single(c => c.Name == "parity");
        Assert.Contains("float32 on the CPU", parity.Description);
        Assert.Contains("--threads", parity.Description);

        var (rc, error) = RunCapturingErrors(["parity", folder, "--threads", "0"]);
        Assert.NotEqual(0, rc);
        Assert.Single(error.Split('\n'), l => l.Contains("--threads must be at least 1", StringComparison.Ordinal));
    }

    [Fact]
    public void Training_help_says_fp32_only()
    {
        var train = CliApp.Create().Subcommands.Single(c => c.Name == "train");
        foreach (var name in new[] { "vae", "unet", "classifier" })
        {
            var dtype = train.Subcommands.Single(c => c.Name == name).Options.Single(o => o.Name == "--dtype");
            Assert.Contains("fp32 only", dtype.Description);
        }
        var scaleshift = train.Subcommands.Single(c => c.Name == "scaleshift").Options.Single(o => o.Name == "--dtype");
        Assert.Contains("bf16", scaleshift.Description);
    }

    /// <summary>Runs the CLI in-process with what it writes to stderr captured; see <see cref="ErrorCapture"/>.</summary>
    internal static (int ExitCode, string Error) RunCapturingErrors(params string[] args) => ErrorCapture.Run(() => CliApp.Run(args));
}

/// <summary>Captures stderr per test, though tests run in parallel: stderr is routed once, for good, through a writer
/// that sends each write to the capture of the calling flow (an <see cref="AsyncLocal{T}"/>), or else where it went
/// before. Swapping <see cref="Console.Error"/> per test would let a parallel test's errors land in another's
/// capture.</summary>
internal static class ErrorCapture
{
    private static readonly AsyncLocal<StringWriter?> Current = new();
    private static readonly Lazy<bool> Installed = new(() =>
    {
        Console.SetError(new Router(Console.Error));
        return true;
    });

    public static (int ExitCode, string Error) Run(Func<int> body)
    {
        _ = Installed.Value;
        var capture = new StringWriter();
        Current.Value = capture;
        try
        {
            int rc = body();
            return (rc, capture.ToString());
        }
        finally
        {
            Current.Value = null;
        }
    }

    private sealed class Router(TextWriter fallback) : TextWriter
    {
        public override System.Text.Encoding Encoding => fallback.Encoding;
        private TextWriter Target => (TextWriter?)Current.Value ?? fallback;
        public override void Write(char value) { lock (this) Target.Write(value); }
        public override void Write(string? value) { lock (this) Target.Write(value); }
        public override void WriteLine(string? value) { lock (this) Target.WriteLine(value); }
        public override void Flush() => Target.Flush();
    }
}
