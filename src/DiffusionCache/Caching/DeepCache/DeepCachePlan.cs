using DiffusionCache.Models.Seam;
using DiffusionCache.Models.UNets;

namespace DiffusionCache.Caching.DeepCache;

/// <summary>
/// What DeepCache reuses on a partial step for cache branch k of a given U-Net, derived from the model's block sites
/// (no model-specific paths). DeepCache's units are the layers of the down and up blocks (resnets, attentions,
/// down/upsamplers) and the mid block as a whole. With b = k / 3, l = k % 3, levels counted from the top
/// (down_blocks.i: level i; up_blocks.u: level = levels - 1 - u), layer of down-block layer j = j, of the
/// downsampler = number of resnets, of up-block layer j = (number of resnets - 1 - j), of the upsampler = 0, a
/// partial step reuses (returns the output stored at the last full step):
/// <list type="bullet">
/// <item>the mid block, and every down/up block whose level is &gt; b, as a whole (a down block with its skips);</item>
/// <item>at level b on the down path: layers &gt;= l (for l = 0 the whole block, skips included);</item>
/// <item>at level b on the up path: layers &gt; l (the first recomputed layer then receives the stored deep feature
/// concatenated with a fresh skip, because the up block builds its inputs from whatever the seam returned).</item>
/// </list>
/// Everything shallower than level b, and the stem, embeddings and output layers, is recomputed.
/// </summary>
public sealed class DeepCachePlan
{
    /// <summary>Branch ids pack (level, layer) as 3 * level + layer, as DeepCache does.</summary>
    public const int LayersPerBranchLevel = 3;

    private readonly Dictionary<BlockSite, SitePlan> _sites;

    /// <summary>DeepCache's <c>cache_branch_id</c> k this plan was derived for, 0..<see cref="MaxBranch"/>.</summary>
    public int Branch { get; }
    /// <summary>b = branch / 3: the level whose layers are split between reuse and recomputation.</summary>
    public int Level => Branch / LayersPerBranchLevel;
    /// <summary>l = branch % 3.</summary>
    public int Layer => Branch % LayersPerBranchLevel;
    /// <summary>Resolution levels of the model (number of down blocks).</summary>
    public int Levels { get; }
    /// <summary>The largest valid branch for this model, 3 * <see cref="Levels"/> - 1 (branch 0 reuses the most,
    /// this one the least).</summary>
    public int MaxBranch => LayersPerBranchLevel * Levels - 1;

    /// <summary>Every DeepCache unit of the model (leaf layers of down/up blocks, and the mid block), in call order.</summary>
    public IReadOnlyList<string> Units { get; }
    /// <summary>Units answered from the cache on a partial step.</summary>
    public IReadOnlyList<string> ReusedUnits { get; }
    /// <summary>Units recomputed on a partial step.</summary>
    public IReadOnlyList<string> RecomputedUnits { get; }
    /// <summary>The sites whose outputs the cache stores at a full step: the outermost reused sites (a whole block
    /// when the whole block is reused).</summary>
    public IReadOnlyList<BlockSite> CachedSites { get; }

    private DeepCachePlan(int branch, int levels, Dictionary<BlockSite, SitePlan> sites, IReadOnlyList<BlockSite> order)
    {
        Branch = branch;
        Levels = levels;
        _sites = sites;
        var units = order.Where(s => sites[s].Role == SiteRole.Unit).ToList();
        Units = [.. units.Select(s => s.Path)];
        var reused = order.Where(s => sites[s].ReuseOnPartial).SelectMany(s => sites[s].Units).ToHashSet(StringComparer.Ordinal);
        ReusedUnits = [.. Units.Where(reused.Contains)];
        RecomputedUnits = [.. Units.Where(u => !reused.Contains(u))];
        CachedSites = [.. order.Where(s => sites[s].ReuseOnPartial)];
    }

    /// <summary>The plan for cache branch <paramref name="branch"/> of <paramref name="unet"/>, from its seam's
    /// call sites.</summary>
    /// <param name="unet">The model the plan is for.</param>
    /// <param name="branch">DeepCache's <c>cache_branch_id</c> k: level b = k / 3, layer l = k % 3.</param>
    /// <exception cref="DiffusionCacheException">The model is not a U-Net with one down and one up block per level,
    /// a block has call sites DeepCache does not know, or <paramref name="branch"/> is outside
    /// 0..<see cref="MaxBranch"/>.</exception>
    public static DeepCachePlan For(DiffusionUNet unet, int branch)
    {
        ArgumentNullException.ThrowIfNull(unet);
        return For(unet.Seam.Sites, branch, unet.ClassName);
    }

    /// <summary>The plan for cache branch <paramref name="branch"/> of the model with call sites
    /// <paramref name="sites"/>; throws as <see cref="For(DiffusionUNet, int)"/> does.</summary>
    /// <param name="sites">The model's call sites in registration order (<see cref="BlockSeam.Sites"/>).</param>
    /// <param name="branch">DeepCache's <c>cache_branch_id</c> k: level b = k / 3, layer l = k % 3.</param>
    /// <param name="modelName">Names the model in errors.</param>
    public static DeepCachePlan For(IReadOnlyList<BlockSite> sites, int branch, string modelName = "model")
    {
        ArgumentNullException.ThrowIfNull(sites);
        var down = sites.Where(s => s.Kind == BlockKind.DownBlock).ToList();
        var up = sites.Where(s => s.Kind == BlockKind.UpBlock).ToList();
        var mids = sites.Where(s => s.Kind == BlockKind.MidBlock).ToList();
        int levels = down.Count;
        if (levels == 0 || up.Count != levels || mids.Count > 1 ||
            !down.Select(s => s.Level).Order().SequenceEqual(Enumerable.Range(0, levels)) ||
            !up.Select(s => s.Level).Order().SequenceEqual(Enumerable.Range(0, levels)))
            throw new DiffusionCacheException($"DeepCache: {modelName} is not a U-Net with one down and one up block per " +
                $"level ({down.Count} down blocks, {up.Count} up blocks, {mids.Count} mid blocks)");
        int maxBranch = LayersPerBranchLevel * levels - 1;
        if (branch < 0 || branch > maxBranch)
            throw new DiffusionCacheException($"DeepCache: cache branch {branch} does not exist in {modelName} " +
                $"({levels} levels): valid branches are 0..{maxBranch} (block = branch / 3, layer = branch % 3)");
        int b = branch / LayersPerBranchLevel, l = branch % LayersPerBranchLevel;

        var plans = new Dictionary<BlockSite, SitePlan>();
        foreach (var block in down.Concat(up).Concat(mids))
        {
            var children = sites.Where(s => s.Path.StartsWith(block.Path + ".", StringComparison.Ordinal)).ToList();
            if (block.Kind == BlockKind.MidBlock)
            {
                plans[block] = new SitePlan(SiteRole.Unit, true, [block.Path]);
                foreach (var c in children) plans[c] = SitePlan.Internal;
                continue;
            }
            bool onUp = block.Kind == BlockKind.UpBlock;
            var leaves = children.Where(c => IsLeaf(c.Kind, onUp)).ToList();
            if (leaves.Count != children.Count)
                throw new DiffusionCacheException($"DeepCache: {block.Path} of {modelName} has call sites DeepCache does not " +
                    $"know: {string.Join(", ", children.Except(leaves).Select(c => $"{c.Path} ({c.Kind})"))}");
            int resnets = leaves.Count(c => c.Kind == BlockKind.Resnet);
            // The whole block is reused when it is deeper than b; a down block also when l = 0 at level b.
            bool whole = block.Level > b || (!onUp && block.Level == b && l == 0);
            plans[block] = new SitePlan(SiteRole.Container, whole, [.. leaves.Select(c => c.Path)]);
            foreach (var leaf in leaves)
            {
                int layer = onUp ? (leaf.Kind == BlockKind.Upsampler ? 0 : resnets - 1 - leaf.Index) : leaf.Index;
                bool reused = !whole && block.Level == b && (onUp ? layer > l : layer >= l);
                plans[leaf] = new SitePlan(SiteRole.Unit, reused, [leaf.Path]);
            }
        }
        foreach (var site in sites)
            plans.TryAdd(site, SitePlan.Outside);
        return new DeepCachePlan(branch, levels, plans, sites);
    }

    private static bool IsLeaf(BlockKind kind, bool onUp) => kind switch
    {
        BlockKind.Resnet or BlockKind.Transformer or BlockKind.SelfAttention => true,
        BlockKind.Downsampler => !onUp,
        BlockKind.Upsampler => onUp,
        _ => false,
    };

    internal SitePlan? Find(BlockSite site) => _sites.GetValueOrDefault(site);

    /// <summary>One line for logs, "DeepCache branch k (level b, layer l): reuses r of u units".</summary>
    public override string ToString() => $"DeepCache branch {Branch} (level {Level}, layer {Layer}): reuses {ReusedUnits.Count} of {Units.Count} units";
}

internal enum SiteRole
{
    /// <summary>Stem, embeddings: always computed.</summary>
    Outside,
    /// <summary>A whole down or up block (reused as a whole, or run so that its layers decide).</summary>
    Container,
    /// <summary>A DeepCache unit: a layer of a down/up block, or the mid block.</summary>
    Unit,
    /// <summary>Inside the mid block: part of that unit.</summary>
    Internal,
}

/// <summary>What DeepCache does with one call site.</summary>
/// <param name="Role">Where the site sits in DeepCache's view of the model.</param>
/// <param name="ReuseOnPartial">Whether the site answers from the cache on a partial step (and is stored on the
/// full step before it).</param>
/// <param name="Units">The unit paths this site stands for (itself, or a container's layers).</param>
internal sealed record SitePlan(SiteRole Role, bool ReuseOnPartial, IReadOnlyList<string> Units)
{
    public static readonly SitePlan Outside = new(SiteRole.Outside, false, []);
    public static readonly SitePlan Internal = new(SiteRole.Internal, false, []);
}
