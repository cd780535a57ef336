using System.Text.Json;
using System.Text.Json.Serialization;
using DiffusionCache.Models.Seam;
using DiffusionCache.Models.UNets;

namespace DiffusionCache.Caching.BlockCaching;

/// <summary>
/// Which blocks Block Caching may cache: every <c>Transformer2DModel</c> (the paper's spatial transformers, the
/// default), every <c>ResnetBlock2D</c> (the paper's ResBlock ablation), or both kinds together
/// (<c>transformer2d,resnet2d</c>: the most aggressive schedules, beyond the paper). Both are residual blocks, out = C +
/// PassThrough(in) (eq. 4-5), so a cached change can be added to the current input. The blocks are the model's
/// seam sites of these kinds, in execution order (with both kinds, interleaved as the model calls them).
/// </summary>
[JsonConverter(typeof(BlockCachingTargetsJsonConverter))]
public sealed record BlockCachingTargets
{
    /// <summary>Every <c>Transformer2DModel</c> (name <c>transformer2d</c>).</summary>
    public static BlockCachingTargets Transformers { get; } = new("transformer2d", [BlockKind.Transformer], "Transformer2DModel");

    /// <summary>Every <c>ResnetBlock2D</c> (name <c>resnet2d</c>).</summary>
    public static BlockCachingTargets Resnets { get; } = new("resnet2d", [BlockKind.Resnet], "ResnetBlock2D");

    /// <summary>Every <c>Transformer2DModel</c> and every <c>ResnetBlock2D</c> (name <c>transformer2d,resnet2d</c>).
    /// </summary>
    public static BlockCachingTargets TransformersAndResnets { get; } =
        new("transformer2d,resnet2d", [BlockKind.Transformer, BlockKind.Resnet], "Transformer2DModel or ResnetBlock2D");

    /// <summary>Every single target kind: <see cref="Transformers"/>, <see cref="Resnets"/>. (Kept to single kinds:
    /// callers that offer one kind per choice, such as online Block Caching, iterate it.)</summary>
    public static IReadOnlyList<BlockCachingTargets> All { get; } = [Transformers, Resnets];

    /// <summary>Every target set <see cref="Parse"/> returns: the single kinds and <see cref="TransformersAndResnets"/>.
    /// </summary>
    public static IReadOnlyList<BlockCachingTargets> Supported { get; } = [Transformers, Resnets, TransformersAndResnets];

    private readonly BlockKind[] _kinds;

    /// <summary>The name used in files and on the command line (<c>transformer2d</c>, <c>resnet2d</c>,
    /// <c>transformer2d,resnet2d</c>).</summary>
    public string Name { get; }
    /// <summary>The seam site kind of the blocks (<see cref="BlockKind.Transformer"/> or
    /// <see cref="BlockKind.Resnet"/>); for <see cref="TransformersAndResnets"/> the first of <see cref="Kinds"/>
    /// (use <see cref="Kinds"/> or <see cref="Includes"/> to test a site).</summary>
    public BlockKind Kind => _kinds[0];
    /// <summary>Every seam site kind the targets cover.</summary>
    public IReadOnlyList<BlockKind> Kinds => _kinds;
    /// <summary>The diffusers module class of the blocks (both, joined by "or", for a combined set).</summary>
    public string ModuleClass { get; }

    private BlockCachingTargets(string name, BlockKind[] kinds, string moduleClass)
    {
        Name = name;
        _kinds = kinds;
        ModuleClass = moduleClass;
    }

    /// <summary>Whether sites of kind <paramref name="kind"/> are targets.</summary>
    public bool Includes(BlockKind kind) => Array.IndexOf(_kinds, kind) >= 0;

    /// <summary>The targets named <paramref name="name"/>: <c>transformer2d</c>, <c>resnet2d</c> or both
    /// comma-separated in either order (<c>transformer2d,resnet2d</c>; case-sensitive, no spaces).</summary>
    /// <exception cref="DiffusionCacheException">The name is none of <see cref="Supported"/>, or lists a kind twice.
    /// </exception>
    public static BlockCachingTargets Parse(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        var parts = name.Split(',');
        var single = parts.Select(p => All.FirstOrDefault(t => t.Name == p)).ToList();
        if (single.Any(t => t is null) || single.Distinct().Count() != single.Count)
            throw new DiffusionCacheException(
                $"unknown cache targets '{name}' (supported: {string.Join(", ", Supported.Select(t => t.Name))})");
        // One canonical object per set, whatever the order written: schedules and profiles compare equal.
        return single.Count == 1 ? single[0]! : TransformersAndResnets;
    }

    /// <summary>The model's cacheable sites of these kinds, in execution order. A model without any is an error.
    /// </summary>
    public IReadOnlyList<BlockSite> Sites(DiffusionUNet unet)
    {
        ArgumentNullException.ThrowIfNull(unet);
        var sites = unet.Seam.Sites.Where(s => Includes(s.Kind)).ToList();
        if (sites.Count == 0)
            throw new DiffusionCacheException($"{unet.ClassName} has no {ModuleClass} blocks to cache (targets '{Name}')");
        return sites;
    }

    /// <summary>The diffusers module paths of <see cref="Sites"/>.</summary>
    public IReadOnlyList<string> Paths(DiffusionUNet unet) => [.. Sites(unet).Select(s => s.Path)];

    /// <summary>Equal when the names are (a name determines the kinds).</summary>
    public bool Equals(BlockCachingTargets? other) => other is not null && Name == other.Name;

    /// <summary>The name's hash.</summary>
    public override int GetHashCode() => Name.GetHashCode(StringComparison.Ordinal);

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
