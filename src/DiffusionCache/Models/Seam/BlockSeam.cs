namespace DiffusionCache.Models.Seam;

/// <summary>
/// The indirection a U-Net routes every addressable block call through. The model owns it but never interprets
/// it; with no hooks attached a call is just <c>compute()</c>. Hooks compose outermost-first, like diffusers'
/// hook registry, so a profiler can observe what a cache answers.
/// </summary>
public sealed class BlockSeam
{
    private readonly List<IBlockHook> _hooks = [];
    private readonly List<BlockSite> _sites = [];

    /// <summary>Every call site of the model, in execution order (registered at construction).</summary>
    public IReadOnlyList<BlockSite> Sites => _sites;
    /// <summary>The attached hooks in attach order, which is also the order they run in: the first attached is the
    /// outermost.</summary>
    public IReadOnlyList<IBlockHook> Hooks => _hooks;

    internal BlockSite Register(string path, BlockKind kind, int level = -1, int index = -1, bool onUpPath = false)
    {
        var site = new BlockSite(path, kind, level, index, onUpPath);
        _sites.Add(site);
        return site;
    }

    /// <summary>Attaches a hook until the returned handle is disposed.</summary>
    public IDisposable Attach(IBlockHook hook)
    {
        _hooks.Add(hook);
        return new Detacher(this, hook);
    }

    /// <summary>Runs one block call through the attached hooks, outermost first; the innermost hook's
    /// <c>compute</c> is <paramref name="compute"/>. With no hooks attached this is just <c>compute()</c>.</summary>
    /// <param name="call">The call site and the block's input.</param>
    /// <param name="compute">Runs the block itself.</param>
    /// <returns>What the outermost hook answered (or the block's own output), for the model to use.</returns>
    public BlockOutput Run(BlockCall call, Func<BlockOutput> compute) => RunFrom(0, call, compute);

    private BlockOutput RunFrom(int index, BlockCall call, Func<BlockOutput> compute) =>
        index == _hooks.Count ? compute() : _hooks[index].Run(call, () => RunFrom(index + 1, call, compute));

    private sealed class Detacher(BlockSeam seam, IBlockHook hook) : IDisposable
    {
        public void Dispose() => seam._hooks.Remove(hook);
    }
}
