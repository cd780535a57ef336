using TorchSharp;

namespace DiffusionCache.Models.Seam;

/// <summary>What a block call produced: its hidden state, and for a down block the skip tensors it hands to the
/// up path (empty for every other kind). DeepCache reuses both, so the seam carries both.</summary>
public sealed class BlockOutput
{
    private static readonly torch.Tensor[] NoSkips = [];

    /// <summary>The block's output hidden state, [B, C, H, W].</summary>
    public torch.Tensor Hidden { get; }
    /// <summary>For a down block, the skip tensors it adds for the up path, in order (one per resnet, then the
    /// downsampler's output); empty for every other kind.</summary>
    public IReadOnlyList<torch.Tensor> Skips { get; }

    /// <summary>Wraps what a block call produced.</summary>
    /// <param name="hidden">The block's output hidden state.</param>
    /// <param name="skips">A down block's skip tensors; null for none.</param>
    public BlockOutput(torch.Tensor hidden, IReadOnlyList<torch.Tensor>? skips = null)
    {
        Hidden = hidden;
        Skips = skips ?? NoSkips;
    }

    /// <summary>Wraps the hidden state of a call that has no skip tensors, so that a compute function or a hook can
    /// answer with a plain tensor.</summary>
    /// <param name="hidden">The block's output hidden state.</param>
    public static implicit operator BlockOutput(torch.Tensor hidden) => new(hidden);
}
