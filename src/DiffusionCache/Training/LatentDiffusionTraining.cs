using DiffusionCache.Models.Conditioning;
using DiffusionCache.Models.Config;
using DiffusionCache.Models.UNets;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Training;

/// <summary>The trainable pair of a class-conditional latent diffusion model: the U-Net and the label encoder that
/// feeds its cross-attention (parameter names <c>unet.*</c> and <c>label_encoder.*</c>).</summary>
public sealed class ConditionedUNet : nn.Module
{
    /// <summary>The denoiser, registered as <c>unet</c>.</summary>
    public UNet2DConditionModel UNet { get; }

    /// <summary>The label encoder, registered as <c>label_encoder</c>: class labels (and the null label) to the
    /// context tokens of the U-Net's cross-attention.</summary>
    public LabelEncoder LabelEncoder { get; }

    /// <summary>Registers <paramref name="unet"/> and <paramref name="labelEncoder"/> as the pair's submodules; the
    /// encoder's embedding width must be the U-Net's cross-attention width.</summary>
    public ConditionedUNet(UNet2DConditionModel unet, LabelEncoder labelEncoder) : base(nameof(ConditionedUNet))
    {
        UNet = unet;
        LabelEncoder = labelEncoder;
        register_module("unet", unet);
        register_module("label_encoder", labelEncoder);
    }

    /// <summary>Does nothing: the constructor registers the parts under diffusers' names (<c>unet</c>,
    /// <c>label_encoder</c>) rather than TorchSharp's field names.</summary>
    protected override void RegisterComponents() { }
}

/// <summary>
/// DDPM training of a class-conditional latent U-Net (epsilon prediction, uniform timesteps) with label dropout,
/// so that the null label learns the unconditional model used by classifier-free guidance.
/// </summary>
public static class LatentDiffusionTraining
{
    /// <summary>The embedded model's denoiser on 8x8x4 latents: spatial transformers at 8x8 and 4x4, a plain
    /// block at 2x2, a cross-attention mid block; the context is 4 label tokens of width 64.</summary>
    public static UNet2DConditionConfig FashionConfig { get; } = new()
    {
        InChannels = 4,
        OutChannels = 4,
        SampleSize = 8,
        BlockOutChannels = [64, 128, 128],
        DownBlockTypes = ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        UpBlockTypes = ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
        OnlyCrossAttention = [false, false, false],
        LayersPerBlock = [2, 2, 2],
        TransformerLayersPerBlock = [1, 1, 1],
        NumAttentionHeads = [4, 4, 4],
        CrossAttentionDim = [64, 64, 64],
        NormNumGroups = 32,
    };

    /// <summary>The embedded model's label encoder: the 10 Fashion-MNIST classes (plus the null label), each as 4
    /// context tokens of width 64.</summary>
    public static LabelEncoderConfig FashionLabels { get; } = new(NumLabels: 10, TokensPerLabel: 4, EmbeddingDim: 64);

    /// <summary>Trains <paramref name="model"/> in place with the DDPM simple loss (DDPM Algorithm 1): x_t =
    /// sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε with t uniform over the training timesteps, MSE between the predicted and the
    /// true ε. Batches, label dropout, timesteps and noise are drawn where the data lives (the job's generator is a CPU
    /// one), then moved to the model's device, so a run gives the same draws on any device. Resumes from a checkpoint
    /// in <see cref="TrainingOptions.CheckpointDir"/>.</summary>
    /// <param name="model">The U-Net and label encoder to train, float32 on any device.</param>
    /// <param name="latents">float32 [N, C, h, w] VAE latents, already multiplied by the VAE's scaling factor, on the
    /// CPU (where the job's generator draws).</param>
    /// <param name="labels">int64 [N] class labels in [0, NumLabels), beside <paramref name="latents"/>.</param>
    /// <param name="alphasCumprod">ᾱ_t for every training timestep (the scheduler's <c>alphas_cumprod</c>).</param>
    /// <param name="options">How to train.</param>
    /// <param name="labelDropout">Probability in [0, 1] that a label is replaced by the null label, which teaches
    /// the unconditional model of classifier-free guidance (e.g. 0.1).</param>
    /// <param name="progress">Receives a report after every step.</param>
    /// <param name="cancel">Stops after the current step, with a checkpoint saved, by throwing
    /// <see cref="OperationCanceledException"/>.</param>
    /// <returns>The EMA of the weights, which the caller owns and disposes (copy it into the model with
    /// <see cref="ExponentialMovingAverage.CopyTo"/>).</returns>
    public static ExponentialMovingAverage Train(ConditionedUNet model, Tensor latents, Tensor labels,
        IReadOnlyList<float> alphasCumprod, TrainingOptions options, double labelDropout,
        IProgress<TrainingProgress>? progress = null, CancellationToken cancel = default)
    {
        using var alphas = tensor(alphasCumprod.ToArray());
        var sqrtAlpha = alphas.sqrt().DetachFromDisposeScope();
        var sqrtOneMinus = (1 - alphas).sqrt().DetachFromDisposeScope();
        long trainSteps = alphasCumprod.Count;
        try
        {
            var loop = new TrainingLoop(model, latents.shape[0], options);
            var device = model.parameters().First().device;
            return loop.Run((indices, generator) =>
            {
                var x0 = latents.index_select(0, indices);
                var y = labels.index_select(0, indices);
                long b = x0.shape[0];
                var drop = rand([b], generator: generator) < labelDropout;
                y = where(drop, full_like(y, model.LabelEncoder.NullLabel), y);
                var t = randint(0, trainSteps, [b], generator: generator);
                var noise = randn(x0.shape, generator: generator);
                var xt = sqrtAlpha.index_select(0, t).view(b, 1, 1, 1) * x0 + sqrtOneMinus.index_select(0, t).view(b, 1, 1, 1) * noise;
                var prediction = model.UNet.Forward(new UNetInput(xt.to(device), t.to(device), model.LabelEncoder.call(y.to(device))));
                return nn.functional.mse_loss(prediction, noise.to(device));
            }, progress, cancel);
        }
        finally
        {
            sqrtAlpha.Dispose();
            sqrtOneMinus.Dispose();
        }
    }
}
