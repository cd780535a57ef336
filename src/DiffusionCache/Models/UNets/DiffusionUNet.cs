using DiffusionCache.Models.Blocks;
using DiffusionCache.Models.Layers;
using DiffusionCache.Models.Seam;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using DiffusionCache.Runtime;

namespace DiffusionCache.Models.UNets;

/// <summary>What pipelines, caching and tools need of any U-Net family: a forward pass, the seam its blocks are
/// called through, and its shape facts.</summary>
public abstract class DiffusionUNet : nn.Module
{
    /// <summary>Submodules are registered explicitly under diffusers' names; TorchSharp's reflective
    /// registration would add them again under C# field names.</summary>
    protected override void RegisterComponents() { }

    /// <summary>Creates the module; the derived class builds and registers its submodules and call sites.</summary>
    /// <param name="name">The TorchSharp module name (the derived class's name).</param>
    protected DiffusionUNet(string name) : base(name)
    {
        ModelSite = Seam.Register(ModelPath, BlockKind.Model);
    }

    /// <summary>Seam path of the whole denoiser call (diffusers' pipeline component name).</summary>
    public const string ModelPath = "unet";

    /// <summary>The site of the whole denoiser call: registered first, every block call happens inside it.</summary>
    public BlockSite ModelSite { get; }

    /// <summary>Every addressable block call goes through this seam (see <see cref="BlockSeam"/>).</summary>
    public BlockSeam Seam { get; } = new();

    /// <summary>diffusers' class name, as <c>_class_name</c> in <c>config.json</c> names it
    /// (<c>UNet2DConditionModel</c>, <c>UNet2DModel</c>).</summary>
    public abstract string ClassName { get; }
    /// <summary>Channels of the sample the model takes (<c>in_channels</c>: 4 for Stable Diffusion latents, 3 for
    /// pixel-space DDPM models).</summary>
    public abstract int InChannels { get; }
    /// <summary>Channels of the prediction <see cref="Forward"/> returns (<c>out_channels</c>).</summary>
    public abstract int OutChannels { get; }
    /// <summary>The sample side the model was trained at (<c>sample_size</c>; latent pixels for latent models).
    /// Informative: other sides are accepted.</summary>
    public abstract int SampleSize { get; }
    /// <summary>Width of the cross-attention context, or null for models without cross-attention.</summary>
    public abstract int? ContextDim { get; }
    /// <summary>Number of classes of the class embedding (<c>num_class_embeds</c>), or null for models without one;
    /// when set, <see cref="UNetInput.ClassLabels"/> is required.</summary>
    public abstract int? NumClassEmbeds { get; }

    /// <summary>One denoiser evaluation, diffusers' <c>unet(sample, timestep, ...).sample</c>. Every addressable
    /// block call goes through <see cref="Seam"/>, so attached hooks (caches, profilers) take part.</summary>
    /// <param name="input">The sample [B, in_channels, H, W], the timestep and whatever conditioning the model
    /// needs (see <see cref="UNetInput"/>).</param>
    /// <returns>The prediction [B, out_channels, H, W] (noise, v or sample, as the model was trained); the caller
    /// owns it.</returns>
    /// <exception cref="DiffusionCacheException">An input has the wrong shape, or conditioning the model needs is
    /// missing (or class labels are given to a model without a class embedding).</exception>
    public abstract Tensor Forward(UNetInput input);

    /// <summary>An input of zeros of the shapes this model takes (timestep 500), on its device and in its type: for
    /// tracing, MAC counting and benchmarks.</summary>
    public virtual UNetInput ZeroInput(int batch, int height, int width, int contextLength = 77)
    {
        var p = parameters().First();
        return new UNetInput(zeros([batch, InChannels, height, width], p.dtype, p.device), tensor(500.0f, device: p.device),
            ContextDim is int d ? zeros([batch, contextLength, d], p.dtype, p.device) : null,
            NumClassEmbeds is not null ? zeros([batch], ScalarType.Int64, p.device) : null);
    }

    /// <summary>The modules and call sites both U-Net families are made of, in diffusers' order.</summary>
    protected sealed record UNetParts(
        Conv2d ConvIn, BlockSite ConvInSite,
        Timesteps TimeProj, BlockSite TimeProjSite,
        TimestepEmbedding TimeEmbedding, BlockSite TimeEmbeddingSite,
        Embedding? ClassEmbedding, BlockSite? ClassEmbeddingSite, bool ConcatClassEmbedding,
        IReadOnlyList<DownBlock> Down, MidBlock? Mid, IReadOnlyList<UpBlock> Up,
        GroupNorm? NormOut, Conv2d ConvOut, bool CenterInputSample, AddedEmbedding? Added = null);

    /// <summary>SDXL's <c>text_time</c> conditioning: each time id embedded like a timestep (<c>add_time_proj</c>),
    /// concatenated after the pooled text embeddings, through <c>add_embedding</c>; added to the time embedding.</summary>
    protected sealed record AddedEmbedding(Timesteps TimeProj, BlockSite TimeProjSite, TimestepEmbedding Embedding, BlockSite EmbeddingSite);

    /// <summary>
    /// The forward pass both families share: time (+ class) embedding, conv_in, down blocks collecting skips, the
    /// mid block, up blocks consuming them from the end, GroupNorm-SiLU-conv_out. Every block goes through the seam.
    /// </summary>
    protected Tensor Denoise(UNetParts p, UNetInput input, Tensor? context) =>
        Seam.Run(new BlockCall(ModelSite, input.Sample), () => DenoiseBlocks(p, input, context)).Hidden;

    private Tensor DenoiseBlocks(UNetParts p, UNetInput input, Tensor? context)
    {
        var sample = input.Sample;
        if (p.ClassEmbedding is null && input.ClassLabels is not null)
            throw new DiffusionCacheException("class_labels given to a model without num_class_embeds");
        using var scope = NewDisposeScope();
        // diffusers passes explicit upsample sizes when a side is not a multiple of 2^(number of upsamplers).
        long factor = 1L << p.Up.Count(b => b.HasUpsampler);
        bool forwardUpsampleSize = sample.shape[2] % factor != 0 || sample.shape[3] % factor != 0;
        if (p.CenterInputSample) sample = sample * 2.0 - 1.0;

        var timesteps = BroadcastTimesteps(input.Timestep, sample);
        var tEmb = Through(p.TimeProjSite, timesteps, () => p.TimeProj.call(timesteps).to(sample.dtype));
        var emb = Through(p.TimeEmbeddingSite, tEmb, () => p.TimeEmbedding.call(tEmb));
        if (p.ClassEmbedding is not null)
        {
            var labels = input.ClassLabels ?? throw new DiffusionCacheException("class_labels are required: the model has num_class_embeds");
            var classEmb = Through(p.ClassEmbeddingSite!, labels,
                () => p.ClassEmbedding.call(labels.to(ScalarType.Int64, sample.device)).to(sample.dtype));
            emb = p.ConcatClassEmbedding ? cat([emb, classEmb], -1) : emb + classEmb;
        }
        if (p.Added is { } added)
        {
            var textEmbeds = input.TextEmbeds ?? throw new DiffusionCacheException("text_embeds are required: the model has addition_embed_type text_time");
            var timeIds = input.TimeIds ?? throw new DiffusionCacheException("time_ids are required: the model has addition_embed_type text_time");
            var flatIds = timeIds.flatten();
            var idEmb = Through(added.TimeProjSite, flatIds, () => added.TimeProj.call(flatIds));
            var addInput = cat([textEmbeds.to(idEmb.dtype), idEmb.reshape(textEmbeds.shape[0], -1)], -1).to(emb.dtype);
            emb = emb + Through(added.EmbeddingSite, addInput, () => added.Embedding.call(addInput));
        }

        var h = Through(p.ConvInSite, sample, () => ConvolutionKernels.Run(p.ConvIn, sample));
        var skips = new List<Tensor> { h };
        foreach (var block in p.Down)
        {
            var blockInput = h;
            var result = Seam.Run(new BlockCall(block.Site, blockInput), () => block.Forward(blockInput, emb, context));
            h = result.Hidden;
            skips.AddRange(result.Skips);
        }
        if (p.Mid is not null)
        {
            var midInput = h;
            h = Seam.Run(new BlockCall(p.Mid.Site, midInput), () => p.Mid.Forward(midInput, emb, context)).Hidden;
        }
        for (int i = 0; i < p.Up.Count; i++)
        {
            var block = p.Up[i];
            var blockSkips = skips.GetRange(skips.Count - block.NumResnets, block.NumResnets);
            skips.RemoveRange(skips.Count - block.NumResnets, block.NumResnets);
            long[]? upsampleSize = forwardUpsampleSize && i < p.Up.Count - 1 ? skips[^1].shape[2..] : null;
            var blockInput = h;
            h = Seam.Run(new BlockCall(block.Site, blockInput),
                () => block.Forward(blockInput, blockSkips, emb, context, upsampleSize)).Hidden;
        }
        if (p.NormOut is not null) h = nn.functional.silu(p.NormOut.call(h));
        return ConvolutionKernels.Run(p.ConvOut, h).MoveToOuterDisposeScope();
    }

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

    /// <summary>Throws <see cref="DiffusionCacheException"/> unless <paramref name="sample"/> is
    /// [B, <paramref name="inChannels"/>, H, W].</summary>
    /// <param name="sample">The noisy sample given to <see cref="Forward"/>.</param>
    /// <param name="inChannels">The channels the model takes.</param>
    protected static void CheckSample(Tensor sample, int inChannels)
    {
        if (sample.dim() != 4 || sample.shape[1] != inChannels)
            throw new DiffusionCacheException($"sample must be [B, {inChannels}, H, W], got [{string.Join(",", sample.shape)}]");
    }
}
