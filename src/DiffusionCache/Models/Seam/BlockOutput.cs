using TorchSharp;

namespace DiffusionCache.Models.Seam;

/// <summary>What a block call produced: its hidden state, and for a down block the skip tensors it hands to the
/// up path (empty for every other kind). DeepCache reuses both, so the seam carries both.</summary>
public sealed class BlockOutput
{
    private static readonly torch.Tensor[] NoSkips = [];

    public torch.Tensor Hidden { get; }
    public IReadOnlyList<torch.Tensor> Skips { get; }

    public BlockOutput(torch.Tensor hidden, IReadOnlyList<torch.Tensor>? skips = null)
    {
        Hidden = hidden;
        Skips = skips ?? NoSkips;
    }

    public static implicit operator BlockOutput(torch.Tensor hidden) => new(hidden);
}
