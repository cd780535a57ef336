using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using System.Text;
using TorchSharp;

namespace DiffusionCache.Runtime;

/// <summary>
/// Process-wide settings libtorch must see before it loads. The one today: libtorch 2.10's oneDNN (3.7.1) picks its
/// AVX-512 convolution kernels on AMD processors with AVX-512 (seen on an EPYC with avx512_vp2intersect), and there
/// they compute wrong values — a 3×3 convolution with 24 input channels and batch 2 differs from the same
/// convolution run per sample by 0.4, and it corrupts neighbouring memory. Capping oneDNN at AVX2 gives exact results.
/// So on AMD processors with AVX-512 we set <c>DNNL_MAX_CPU_ISA=AVX2</c> unless the user has set it.
/// It also turns NNPACK off (see <see cref="DisableNnpack"/>).
/// </summary>
public static class NativeRuntime
{
    /// <summary>The environment variable oneDNN reads once, when libtorch loads, to cap its instruction set.</summary>
    public const string IsaVariable = "DNNL_MAX_CPU_ISA";

    /// <summary>What <see cref="Configure"/> decided, for diagnostics (null until it ran).</summary>
    public static string? Decision { get; private set; }

    /// <summary>Runs when this assembly loads, before any TorchSharp call of ours can load libtorch.</summary>
    [ModuleInitializer]
    [SuppressMessage("Usage", "CA2255", Justification = "libtorch reads the variable once, when it loads: later is too late")]
    internal static void Initialize() => Configure();

    /// <summary>Idempotent; call it first thing in a process that may touch TorchSharp before this library.</summary>
    public static void Configure()
    {
        if (Decision is not null) return;
        if (Environment.GetEnvironmentVariable(IsaVariable) is string set)
            Decision = $"{IsaVariable}={set} (set by the user)";
        else if (NeedsIsaCap())
        {
            // The C environment, not .NET's copy of it: oneDNN reads it with getenv.
            if (OperatingSystem.IsLinux() || OperatingSystem.IsMacOS()) _ = setenv(IsaVariable, "AVX2", 0);
            Environment.SetEnvironmentVariable(IsaVariable, "AVX2");
            Decision = $"{IsaVariable}=AVX2 (AMD processor with AVX-512: oneDNN's AVX-512 convolutions compute wrong values there)";
        }
        else Decision = "oneDNN left at its own choice";
        DisableNnpack();
    }

    /// <summary>
    /// libtorch probes NNPACK for some CPU convolutions and, on processors NNPACK does not support (this project's
    /// EPYC machines), prints "Could not initialize NNPACK! Reason: Unsupported hardware." every time; oneDNN or the
    /// native kernels serve those convolutions either way. Python's <c>torch.backends.nnpack.set_flags(False)</c> is
    /// <c>at::globalContext().setUserEnabledNNPACK(false)</c>, which TorchSharp does not bind, so we call it by its
    /// Itanium-mangled name (Linux builds of libtorch); where that fails nothing changes but the noise.
    /// </summary>
    private static void DisableNnpack()
    {
        if (!OperatingSystem.IsLinux()) return;
        try
        {
            SetUserEnabledNnpack(GlobalContext(), false);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or BadImageFormatException)
        {
        }
    }

    /// <summary>Whether libtorch may use NNPACK (false once <see cref="Configure"/> ran on Linux); null where it
    /// cannot be asked.</summary>
    public static bool? NnpackEnabled()
    {
        if (!OperatingSystem.IsLinux()) return null;
        try
        {
            return UserEnabledNnpack(GlobalContext());
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or BadImageFormatException)
        {
            return null;
        }
    }

    [DllImport("libtorch_cpu", EntryPoint = "_ZN2at13globalContextEv")]
    [DefaultDllImportSearchPaths(DllImportSearchPath.AssemblyDirectory | DllImportSearchPath.SafeDirectories)]
    private static extern IntPtr GlobalContext();

    [DllImport("libtorch_cpu", EntryPoint = "_ZN2at7Context20setUserEnabledNNPACKEb")]
    [DefaultDllImportSearchPaths(DllImportSearchPath.AssemblyDirectory | DllImportSearchPath.SafeDirectories)]
    private static extern void SetUserEnabledNnpack(IntPtr context, [MarshalAs(UnmanagedType.U1)] bool enabled);

    [DllImport("libtorch_cpu", EntryPoint = "_ZNK2at7Context17userEnabledNNPACKEv")]
    [DefaultDllImportSearchPaths(DllImportSearchPath.AssemblyDirectory | DllImportSearchPath.SafeDirectories)]
    [return: MarshalAs(UnmanagedType.U1)]
    private static extern bool UserEnabledNnpack(IntPtr context);

    /// <summary>
    /// Whether oneDNN computes the input gradient of a convolution correctly on this processor, probed once per
    /// process: a 3×3 convolution from 24 to 4 channels (the shape of a latent U-Net's <c>conv_out</c>), its input
    /// gradient with oneDNN against libtorch's native kernel. On this project's AMD EPYC with oneDNN capped at AVX2
    /// (see the class remarks) it is not: the gradient of convolutions with fewer than 8 output channels comes back
    /// 30–75 % off or NaN, from run to run, while forward passes are exact. Training whose gradient crosses such a
    /// convolution should run its backward passes under <see cref="NativeConvolutions"/>.
    /// </summary>
    public static bool OneDnnConvolutionBackwardIsExact => s_backwardExact.Value;

    private static readonly Lazy<bool> s_backwardExact = new(ProbeConvolutionBackward);

    /// <summary>Until disposed, convolutions (and the backward passes of convolutions recorded earlier, whose kernel
    /// libtorch picks when the backward pass runs) use libtorch's native kernels instead of oneDNN's. The switch is
    /// process-wide (<c>at::globalContext().setUserEnabledMkldnn</c>): scopes must not overlap with other threads'
    /// work that expects oneDNN's results bit for bit. A no-op where the switch cannot be reached.</summary>
    public static IDisposable NativeConvolutions()
    {
        bool? previous = Mkldnn(null);
        if (previous is null) return NoScope.Instance;
        Mkldnn(false);
        return new MkldnnScope(previous.Value);
    }

    /// <summary>Reads and, when <paramref name="enable"/> is given, sets libtorch's oneDNN switch; returns the value
    /// before, or null where it cannot be reached.</summary>
    private static bool? Mkldnn(bool? enable)
    {
        if (!OperatingSystem.IsLinux()) return null;
        try
        {
            var context = GlobalContext();
            bool before = UserEnabledMkldnn(context);
            if (enable is bool e) SetUserEnabledMkldnn(context, e);
            return before;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or BadImageFormatException)
        {
            return null;
        }
    }

    private static bool ProbeConvolutionBackward()
    {
        Configure();
        using var scope = torch.NewDisposeScope();
        using var grad = torch.enable_grad();
        var generator = new torch.Generator(11);
        var x = torch.randn([2, 24, 8, 8], generator: generator);
        var upstream = torch.randn([2, 4, 8, 8], generator: generator);
        var weight = torch.randn([4, 24, 3, 3], generator: generator) * 0.1f;
        torch.Tensor InputGradient()
        {
            var input = x.detach().clone().requires_grad_(true);
            (torch.nn.functional.conv2d(input, weight, padding: [1, 1]) * upstream).sum().backward();
            return input.grad!.clone();
        }
        torch.Tensor native;
        using (NativeConvolutions()) native = InputGradient();
        // Three tries: the wrong results vary from run to run, and one that happened to be right must not pass.
        return Enumerable.Range(0, 3).All(_ => (InputGradient() - native).abs().max().item<float>() <= 1e-4f * native.abs().max().item<float>());
    }

    private sealed class MkldnnScope(bool previous) : IDisposable
    {
        private bool _disposed;

        public void Dispose()
        {
            if (_disposed) return;
            _disposed = true;
            Mkldnn(previous);
        }
    }

    private sealed class NoScope : IDisposable
    {
        public static NoScope Instance { get; } = new();

        public void Dispose() { }
    }

    [DllImport("libtorch_cpu", EntryPoint = "_ZN2at7Context20setUserEnabledMkldnnEb")]
    [DefaultDllImportSearchPaths(DllImportSearchPath.AssemblyDirectory | DllImportSearchPath.SafeDirectories)]
    private static extern void SetUserEnabledMkldnn(IntPtr context, [MarshalAs(UnmanagedType.U1)] bool enabled);

    [DllImport("libtorch_cpu", EntryPoint = "_ZNK2at7Context17userEnabledMkldnnEv")]
    [DefaultDllImportSearchPaths(DllImportSearchPath.AssemblyDirectory | DllImportSearchPath.SafeDirectories)]
    [return: MarshalAs(UnmanagedType.U1)]
    private static extern bool UserEnabledMkldnn(IntPtr context);

    private static bool NeedsIsaCap() => X86Base.IsSupported && Avx512F.IsSupported && Vendor() == "AuthenticAMD";

    private static string Vendor()
    {
        var (_, ebx, ecx, edx) = X86Base.CpuId(0, 0);
        var bytes = new byte[12];
        BitConverter.TryWriteBytes(bytes.AsSpan(0), ebx);
        BitConverter.TryWriteBytes(bytes.AsSpan(4), edx);
        BitConverter.TryWriteBytes(bytes.AsSpan(8), ecx);
        return Encoding.ASCII.GetString(bytes);
    }

    [DllImport("libc", CharSet = CharSet.Ansi, BestFitMapping = false, ThrowOnUnmappableChar = true)]
    [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
    private static extern int setenv(string name, string value, int overwrite);
}
