namespace DiffusionCache.Models.Seam;

/// <summary>
/// The one way caching (or profiling) reaches the model. A hook sees every addressable block call and decides
/// what it returns: call <c>compute</c> to run the block (and observe its output), or answer without
/// running it. Tensors belong to the forward pass's dispose scope: a hook that keeps one beyond the call keeps its
/// own handle (<c>DetachFromDisposeScope</c> on a clone or alias), and answers with a fresh handle (<c>alias()</c>)
/// so that the model may dispose what it is given.
/// </summary>
public interface IBlockHook
{
    /// <summary>Answers one block call: return what <paramref name="compute"/> produced (observing or storing it on
    /// the way), or an answer of the hook's own without running the block.</summary>
    /// <param name="call">The call site and the block's input.</param>
    /// <param name="compute">Runs the block, and any hooks attached inside this one.</param>
    /// <returns>The output the model continues with: a handle that the model may dispose.</returns>
    BlockOutput Run(BlockCall call, Func<BlockOutput> compute);
}
