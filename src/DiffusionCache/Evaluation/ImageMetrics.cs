using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Evaluation;

/// <summary>Fidelity of an approximation to a reference of the same shape [B, C, H, W]: PSNR and SSIM over the
/// given data range (2 for images in [-1, 1]; for latents, the reference's max - min).</summary>
public static class ImageMetrics
{
    /// <summary>Mean PSNR over the batch, in dB (infinite when identical).</summary>
    public static double Psnr(Tensor actual, Tensor reference, double range)
    {
        using var scope = NewDisposeScope();
        var mse = (actual.to(ScalarType.Float64) - reference.to(ScalarType.Float64)).pow(2).mean([1, 2, 3]);
        var psnr = 10 * (range * range / mse).log10();
        return psnr.mean().item<double>();
    }

    /// <summary>Mean SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03) over the batch and
    /// channels; windows are clipped at the borders ("valid" convolution), as in the reference implementation.</summary>
    public static double Ssim(Tensor actual, Tensor reference, double range)
    {
        using var scope = NewDisposeScope();
        long c = actual.shape[1];
        int size = (int)Math.Min(11, Math.Min(actual.shape[2], actual.shape[3]));
        var coords = arange(size, ScalarType.Float64) - (size - 1) / 2.0;
        var g = (-(coords * coords) / (2 * 1.5 * 1.5)).exp();
        g = g / g.sum();
        var window = g.outer(g).expand(c, 1, size, size).contiguous();
        Tensor Blur(Tensor t) => nn.functional.conv2d(t, window, groups: c);
        var x = actual.to(ScalarType.Float64);
        var y = reference.to(ScalarType.Float64);
        double c1 = Math.Pow(0.01 * range, 2), c2 = Math.Pow(0.03 * range, 2);
        var muX = Blur(x);
        var muY = Blur(y);
        var sigmaX = Blur(x * x) - muX * muX;
        var sigmaY = Blur(y * y) - muY * muY;
        var sigmaXY = Blur(x * y) - muX * muY;
        var map = (2 * muX * muY + c1) * (2 * sigmaXY + c2) / ((muX * muX + muY * muY + c1) * (sigmaX + sigmaY + c2));
        return map.mean().item<double>();
    }
}
