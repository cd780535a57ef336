namespace DiffusionCache.Models.Seam;

/// <summary>
/// The one way caching (or profiling) reaches the model. A hook sees every addressable block call and decides
/// what it returns: call <paramref name="compute"/> to run the block (and observe its output), or answer without
/// running it. Tensors belong to the forward pass's dispose scope: a hook that keeps one beyond the call keeps its
/// own handle (<c>DetachFromDisposeScope</c> on a clone or alias), and answers with a fresh handle (<c>alias()</c>)
/// so that the model may dispose what it is given.
/// </summary>
public interface IBlockHook
{
    BlockOutput Run(BlockCall call, Func<BlockOutput> compute);
}
