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

    public static IReadOnlyCollection<string> Kinds => Suites.Keys;

    public static IParitySuite For(string kind) =>
        Suites.TryGetValue(kind, out var make)
            ? make()
            : throw new DiffusionCacheException(
                $"golden kind '{kind}' is not supported (supported: {string.Join(", ", Suites.Keys.Order())})");
}
