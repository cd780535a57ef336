using DiffusionCache.Models.Autoencoders;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Models.Autoencoders;

public sealed class DiagonalGaussianTests
{
    [Fact]
    public void SplitsMomentsAlongChannelsAndClampsLogVar()
    {
        using var scope = NewDisposeScope();
        // Channels 0-1 are the mean, 2-3 the log-variance.
        var moments = tensor(new float[] { 1, 2, 100, -100 }).reshape(1, 4, 1, 1);
        using var g = DiagonalGaussian.FromMoments(moments);
        Assert.Equal(new float[] { 1, 2 }, g.Mean.flatten().data<float>().ToArray());
        Assert.Equal(new float[] { 20, -30 }, g.LogVar.flatten().data<float>().ToArray());
        Assert.True(g.Mode().eq(g.Mean).all().item<bool>());
    }

    [Fact]
    public void SampleIsMeanPlusStdTimesGeneratorNoise()
    {
        using var scope = NewDisposeScope();
        var mean = full(new long[] { 1, 2, 3, 3 }, 0.5f);
        var logVar = full(new long[] { 1, 2, 3, 3 }, MathF.Log(4f));
        using var g = new DiagonalGaussian(mean.alias(), logVar.alias());
        var sample = g.Sample(new Generator(42));
        var noise = randn(new long[] { 1, 2, 3, 3 }, generator: new Generator(42));
        Assert.True(sample.allclose(mean + 2 * noise, rtol: 1e-6, atol: 1e-6));
        Assert.True(g.Sample(new Generator(42)).eq(sample).all().item<bool>(), "the same seed gives the same sample");
    }

    [Fact]
    public void KlOfTheStandardNormalIsZero()
    {
        using var scope = NewDisposeScope();
        using var standard = new DiagonalGaussian(zeros(2, 4, 3, 3), zeros(2, 4, 3, 3));
        Assert.Equal(new float[] { 0, 0 }, standard.Kl().data<float>().ToArray());
        // 0.5 · (1² + e⁰ − 1 − 0) = 0.5 per element, 36 elements per batch row.
        using var shifted = new DiagonalGaussian(ones(2, 4, 3, 3), zeros(2, 4, 3, 3));
        Assert.Equal(new float[] { 18, 18 }, shifted.Kl().data<float>().ToArray());
    }
}
