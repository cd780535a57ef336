using System.Text.Json;
using System.Text.Json.Serialization;
using DiffusionCache.Models.Seam;
using DiffusionCache.Models.UNets;

namespace DiffusionCache.Caching.BlockCaching;

/// <summary>
/// Which blocks Block Caching may cache: every <c>Transformer2DModel</c> (the paper's spatial transformers, the
/// default) or every <c>ResnetBlock2D</c> (the paper's ResBlock ablation). Both are residual blocks, out = C +
/// PassThrough(in) (eq. 4-5), so a cached change can be added to the current input. The blocks are the model's
/// seam sites of that kind, in execution order.
/// </summary>
[JsonConverter(typeof(BlockCachingTargetsJsonConverter))]
public sealed record BlockCachingTargets
{
    /// <summary>Every <c>Transformer2DModel</c> (name <c>transformer2d</c>).</summary>
    public static BlockCachingTargets Transformers { get; } = new("transformer2d", BlockKind.Transformer, "Transformer2DModel");

    /// <summary>Every <c>ResnetBlock2D</c> (name <c>resnet2d</c>).</summary>
    public static BlockCachingTargets Resnets { get; } = new("resnet2d", BlockKind.Resnet, "ResnetBlock2D");

    /// <summary>Every supported target kind: <see cref="Transformers"/>, <see cref="Resnets"/>.</summary>
    public static IReadOnlyList<BlockCachingTargets> All { get; } = [Transformers, Resnets];

    /// <summary>The name used in files and on the command line (<c>transformer2d</c>, <c>resnet2d</c>).</summary>
    public string Name { get; }
    /// <summary>The seam site kind of the blocks (<see cref="BlockKind.Transformer"/> or
    /// <see cref="BlockKind.Resnet"/>).</summary>
    public BlockKind Kind { get; }
    /// <summary>The diffusers module class of the blocks.</summary>
    public string ModuleClass { get; }

    private BlockCachingTargets(string name, BlockKind kind, string moduleClass)
    {
        Name = name;
        Kind = kind;
        ModuleClass = moduleClass;
    }

    /// <summary>The targets named <paramref name="name"/> (<c>transformer2d</c> or <c>resnet2d</c>, case-sensitive).
    /// </summary>
    /// <exception cref="DiffusionCacheException">The name is not one of <see cref="All"/>.</exception>
    public static BlockCachingTargets Parse(string name) =>
        All.FirstOrDefault(t => t.Name == name)
        ?? throw new DiffusionCacheException(
            $"unknown cache targets '{name}' (supported: {string.Join(", ", All.Select(t => t.Name))})");

    /// <summary>The model's cacheable sites of this kind, in execution order. A model without any is an error.</summary>
    public IReadOnlyList<BlockSite> Sites(DiffusionUNet unet)
    {
        ArgumentNullException.ThrowIfNull(unet);
        var sites = unet.Seam.Sites.Where(s => s.Kind == Kind).ToList();
        if (sites.Count == 0)
            throw new DiffusionCacheException($"{unet.ClassName} has no {ModuleClass} blocks to cache (targets '{Name}')");
        return sites;
    }

    /// <summary>The diffusers module paths of <see cref="Sites"/>.</summary>
    public IReadOnlyList<string> Paths(DiffusionUNet unet) => [.. Sites(unet).Select(s => s.Path)];

    /// <summary>The <see cref="Name"/>.</summary>
    public override string ToString() => Name;
}

/// <summary>Writes and reads <see cref="BlockCachingTargets"/> as its name.</summary>
public sealed class BlockCachingTargetsJsonConverter : JsonConverter<BlockCachingTargets>
{
    /// <summary>Reads a name string with <see cref="BlockCachingTargets.Parse"/>.</summary>
    /// <exception cref="JsonException">The token is not a string or not a known name.</exception>
    public override BlockCachingTargets Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType != JsonTokenType.String) throw new JsonException("targets must be a string");
        try
        {
            return BlockCachingTargets.Parse(reader.GetString()!);
        }
        catch (DiffusionCacheException e)
        {
            throw new JsonException(e.Message, e);
        }
    }

    /// <summary>Writes <see cref="BlockCachingTargets.Name"/> as a string.</summary>
    public override void Write(Utf8JsonWriter writer, BlockCachingTargets value, JsonSerializerOptions options) =>
        writer.WriteStringValue(value.Name);
}
