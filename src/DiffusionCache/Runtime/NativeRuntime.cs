using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using System.Text;

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
