using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Models.Autoencoders;

/// <summary>
/// diffusers' <c>DiagonalGaussianDistribution</c>: the VAE posterior N(mean, exp(logvar)) per latent element.
/// Owns its two tensors (dispose it, or them).
/// </summary>
/// <param name="Mean">The mean, [B, C, h, w].</param>
/// <param name="LogVar">The log-variance, same shape (clamped to [-30, 20] by <see cref="FromMoments"/>).</param>
public sealed record DiagonalGaussian(Tensor Mean, Tensor LogVar) : IDisposable
{
    /// <summary>Splits <c>quant_conv</c>'s output [B, 2C, h, w] into mean and log-variance along channels and
    /// clamps the log-variance to [-30, 20], as diffusers does.</summary>
    public static DiagonalGaussian FromMoments(Tensor moments)
    {
        if (moments.dim() < 2 || moments.shape[1] % 2 != 0)
            throw new DiffusionCacheException($"moments must have an even channel count, got [{string.Join(",", moments.shape)}]");
        var parts = moments.chunk(2, 1);
        using var rawLogVar = parts[1];
        return new DiagonalGaussian(parts[0], rawLogVar.clamp(-30.0, 20.0));
    }

    /// <summary>mean + exp(logvar / 2) · ε with ε ~ N(0, I) drawn from <paramref name="generator"/> (the default
    /// generator when null). Differentiable in mean and logvar (the reparameterisation trick).</summary>
    public Tensor Sample(Generator? generator = null)
    {
        using var scope = NewDisposeScope();
        // Like diffusers' randn_tensor: draw on the generator's device, then move, so that a CPU generator gives
        // the same noise whatever device the model runs on.
        var eps = randn(Mean.shape, dtype: Mean.dtype, device: generator?.device ?? Mean.device, generator: generator)
            .to(Mean.device);
        return (Mean + (LogVar * 0.5).exp() * eps).MoveToOuterDisposeScope();
    }

    /// <summary>The distribution's mode, i.e. its mean (a new handle on it).</summary>
    public Tensor Mode() => Mean.alias();

    /// <summary>KL divergence to N(0, I) per batch element, summed over the latent dimensions:
    /// 0.5 · Σ(mean² + var − 1 − logvar) (diffusers' <c>kl()</c>), [B].</summary>
    public Tensor Kl()
    {
        using var scope = NewDisposeScope();
        var dims = Enumerable.Range(1, (int)Mean.dim() - 1).Select(d => (long)d).ToArray();
        return (0.5 * (Mean.pow(2) + LogVar.exp() - 1.0 - LogVar).sum(dims)).MoveToOuterDisposeScope();
    }

    /// <summary>Disposes <see cref="Mean"/> and <see cref="LogVar"/>.</summary>
    public void Dispose()
    {
        Mean.Dispose();
        LogVar.Dispose();
    }
}
