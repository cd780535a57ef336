namespace DiffusionCache.Parity;

/// <summary>The parity suite for each golden kind. A kind is added here when its suite exists.</summary>
public static class ParitySuites
{
    private static readonly Dictionary<string, Func<IParitySuite>> Suites = new(StringComparer.Ordinal)
    {
        ["unet"] = () => new UNetParity(),
        ["schedulers"] = () => new SchedulerParity(),
        ["textvae"] = () => new TextVaeParity(),
        ["blockcache"] = () => new BlockCacheParity(),
        ["deepcache"] = () => new DeepCacheParity(),
        ["sdxl"] = () => new SdxlParity(),
    };

    /// <summary>The golden kinds that have a suite: <c>unet</c>, <c>schedulers</c>, <c>textvae</c>,
    /// <c>blockcache</c>, <c>deepcache</c>, <c>sdxl</c>.</summary>
    public static IReadOnlyCollection<string> Kinds => Suites.Keys;

    /// <summary>A new suite for the golden kind <paramref name="kind"/> (a folder's <see cref="GoldenFolder.Kind"/>);
    /// throws <see cref="DiffusionCacheException"/>, listing the supported kinds, for any other.</summary>
    public static IParitySuite For(string kind) =>
        Suites.TryGetValue(kind, out var make)
            ? make()
            : throw new DiffusionCacheException(
                $"golden kind '{kind}' is not supported (supported: {string.Join(", ", Suites.Keys.Order())})");
}
