using DiffusionCache.Models.Autoencoders;
using DiffusionCache.Models.Config;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Training;

/// <summary>Trains an AutoencoderKL as in LDM: reconstruction (MSE) of a posterior sample plus a small KL term
/// that keeps the latent space smooth and roughly unit-scaled.</summary>
public static class AutoencoderTraining
{
    /// <summary>The embedded model's autoencoder: 32x32x1 images to 8x8x4 latents (two downsamplings). Narrow at
    /// full resolution, where a grayscale image needs little width and most of the compute would go.</summary>
    public static AutoencoderKLConfig FashionConfig { get; } = new()
    {
        InChannels = 1,
        OutChannels = 1,
        DownBlockTypes = ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
        UpBlockTypes = ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
        BlockOutChannels = [16, 32, 64],
        LayersPerBlock = 1,
        LatentChannels = 4,
        NormNumGroups = 8,
        SampleSize = 32,
        ScalingFactor = 1.0,
        ForceUpcast = false,
    };

    /// <summary>Trains <paramref name="vae"/> in place: MSE between the images and the decoded posterior sample, plus
    /// <paramref name="klWeight"/> times the mean KL divergence to N(0, I). Resumes from a checkpoint in
    /// <see cref="TrainingOptions.CheckpointDir"/>.</summary>
    /// <param name="vae">The autoencoder to train, float32 on any device.</param>
    /// <param name="images">float32 [N, C, H, W] in [-1, 1] (for <see cref="FashionConfig"/>, [N, 1, 32, 32]), on any
    /// device: each batch is moved to the autoencoder's.</param>
    /// <param name="options">How to train.</param>
    /// <param name="klWeight">Weight of the KL term; small (e.g. 1e-6), as LDM's KL-regularised autoencoders.</param>
    /// <param name="progress">Receives a report after every step.</param>
    /// <param name="cancel">Stops after the current step, with a checkpoint saved, by throwing
    /// <see cref="OperationCanceledException"/>.</param>
    /// <returns>The EMA of the weights, which the caller owns and disposes.</returns>
    public static ExponentialMovingAverage Train(AutoencoderKL vae, Tensor images, TrainingOptions options,
        double klWeight, IProgress<TrainingProgress>? progress = null, CancellationToken cancel = default)
    {
        var loop = new TrainingLoop(vae, images.shape[0], options);
        var device = vae.parameters().First().device;
        return loop.Run((indices, generator) =>
        {
            var x = images.index_select(0, indices.to(images.device)).to(device);
            using var posterior = vae.Encode(x);
            var reconstruction = vae.Decode(posterior.Sample(generator));
            return nn.functional.mse_loss(reconstruction, x) + klWeight * posterior.Kl().mean();
        }, progress, cancel);
    }

    /// <summary>Latent means of <paramref name="images"/> in batches, unscaled, on the autoencoder's device (each batch
    /// is moved there).</summary>
    public static Tensor EncodeMeans(AutoencoderKL vae, Tensor images, int batch = 500)
    {
        using var noGrad = no_grad();
        var device = vae.parameters().First().device;
        var parts = new List<Tensor>();
        for (long i = 0; i < images.shape[0]; i += batch)
        {
            using var scope = NewDisposeScope();
            using var posterior = vae.Encode(images.narrow(0, i, Math.Min(batch, images.shape[0] - i)).to(device));
            parts.Add(posterior.Mean.clone().MoveToOuterDisposeScope());
        }
        var all = cat(parts);
        foreach (var p in parts) p.Dispose();
        return all;
    }

    /// <summary>LDM's latent scaling: 1 / std of the latents, so the diffusion model sees unit variance.</summary>
    public static double ScalingFactorFor(Tensor latents) => 1.0 / latents.std().item<float>();

    /// <summary>Mean PSNR (dB) of reconstructions from the posterior mean, images in [-1, 1] (each batch is moved to
    /// the autoencoder's device).</summary>
    public static double ReconstructionPsnr(AutoencoderKL vae, Tensor images, int batch = 500)
    {
        using var noGrad = no_grad();
        var device = vae.parameters().First().device;
        double total = 0;
        for (long i = 0; i < images.shape[0]; i += batch)
        {
            using var scope = NewDisposeScope();
            var x = images.narrow(0, i, Math.Min(batch, images.shape[0] - i)).to(device);
            using var posterior = vae.Encode(x);
            var y = vae.Decode(posterior.Mode()).clamp(-1, 1);
            // Peak-to-peak range 2 in [-1, 1]: PSNR = 10 log10(4 / mse), per image.
            var mse = (y - x).pow(2).mean([1, 2, 3]);
            total += (10 * (4 / mse.clamp_min(1e-10)).log10()).sum().item<float>();
        }
        return total / images.shape[0];
    }
}
