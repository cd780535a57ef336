using DiffusionCache.Models.Seam;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Models.UNets;

/// <summary>What pipelines, caching and tools need of any U-Net family: a forward pass, the seam its blocks are
/// called through, and its shape facts.</summary>
public abstract class DiffusionUNet : nn.Module
{
    /// <summary>Submodules are registered explicitly under diffusers' names; TorchSharp's reflective
    /// registration would add them again under C# field names.</summary>
    protected override void RegisterComponents() { }

    protected DiffusionUNet(string name) : base(name) { }

    /// <summary>Every addressable block call goes through this seam (see <see cref="BlockSeam"/>).</summary>
    public BlockSeam Seam { get; } = new();

    public abstract string ClassName { get; }
    public abstract int InChannels { get; }
    public abstract int OutChannels { get; }
    public abstract int SampleSize { get; }
    /// <summary>Width of the cross-attention context, or null for models without cross-attention.</summary>
    public abstract int? ContextDim { get; }
    public abstract int? NumClassEmbeds { get; }

    public abstract Tensor Forward(UNetInput input);

    /// <summary>Runs a stem or embedding module through the seam, so observers see it like any block.</summary>
    protected Tensor Through(BlockSite site, Tensor input, Func<Tensor> compute) =>
        Seam.Run(new BlockCall(site, input), () => compute()).Hidden;

    /// <summary>A timestep given as a scalar or [1] is broadcast to the batch, as diffusers does.</summary>
    protected static Tensor BroadcastTimesteps(Tensor timestep, Tensor sample)
    {
        long batch = sample.shape[0];
        var t = timestep.dim() == 0 ? timestep.reshape(1) : timestep;
        if (t.dim() != 1 || (t.shape[0] != 1 && t.shape[0] != batch))
            throw new DiffusionCacheException($"timestep must be a scalar, [1] or [{batch}], got [{string.Join(",", timestep.shape)}]");
        return t.to(sample.device).expand(batch);
    }

    protected static void CheckSample(Tensor sample, int inChannels)
    {
        if (sample.dim() != 4 || sample.shape[1] != inChannels)
            throw new DiffusionCacheException($"sample must be [B, {inChannels}, H, W], got [{string.Join(",", sample.shape)}]");
    }
}
