using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using DiffusionCache.Runtime;

namespace DiffusionCache.Tests.TestSupport;

/// <summary>Tests may call TorchSharp before touching a type of the library, so they apply its native settings
/// themselves, before libtorch loads (see <see cref="NativeRuntime"/>).</summary>
internal static class NativeSetup
{
    [ModuleInitializer]
    [SuppressMessage("Usage", "CA2255", Justification = "libtorch reads the settings once, when it loads")]
    internal static void Initialize() => NativeRuntime.Configure();
}
