namespace DiffusionCache.Tests.Runtime;

/// <summary>Tests that flip libtorch's process-wide switches (oneDNN off for a backward pass,
/// <see cref="DiffusionCache.Runtime.NativeRuntime.NativeConvolutions"/>) run alone: a test of another class running at
/// the same time could otherwise get native instead of oneDNN convolutions and lose a bit-for-bit comparison.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class LibtorchSwitches
{
    /// <summary>The collection's name.</summary>
    public const string Name = "libtorch process-wide switches";
}
