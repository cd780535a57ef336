using DiffusionCache.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Runtime;

[Collection(LibtorchSwitches.Name)]
public sealed class NativeRuntimeTests
{
    /// <summary>The case that is wrong with oneDNN's AVX-512 kernels on AMD processors: a batch must give what its
    /// samples give one at a time. Fails on such a machine if <see cref="NativeRuntime"/> did not cap the ISA.</summary>
    [Theory]
    [InlineData(24, 16, 3)]
    [InlineData(24, 24, 3)]
    [InlineData(24, 16, 1)]
    [InlineData(40, 8, 3)]
    public void BatchedConvolutionEqualsPerSample(int inChannels, int outChannels, int kernel)
    {
        Assert.NotNull(NativeRuntime.Decision);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var generator = new Generator(7);
        var x = randn([2, inChannels, 8, 8], generator: generator);
        using var conv = nn.Conv2d(inChannels, outChannels, kernel, padding: kernel / 2);
        var batched = conv.call(x);
        var single = cat([conv.call(x[0..1]), conv.call(x[1..2])]);
        Assert.True((batched - single).abs().max().item<float>() < 1e-4f, NativeRuntime.Decision);
    }

    /// <summary>NNPACK is off once the runtime is configured, so libtorch never prints its "Unsupported hardware"
    /// warning (Linux, where the switch can be reached).</summary>
    [Fact]
    public void NnpackIsOff()
    {
        NativeRuntime.Configure();
        using var x = zeros(1);   // libtorch is loaded and usable
        Assert.Equal(OperatingSystem.IsLinux() ? false : null, NativeRuntime.NnpackEnabled());
    }

    /// <summary>The input gradient of a convolution to 4 channels (a latent U-Net's conv_out): under
    /// <see cref="NativeRuntime.NativeConvolutions"/> it is libtorch's own kernel's, equal to a float64 computation;
    /// outside it oneDNN's, which must be as exact wherever the probe says so. On some of this project's AMD EPYC
    /// machines (oneDNN capped at AVX2) the probe says not: oneDNN's gradient is 30-75 % off or NaN; on others it is exact.</summary>
    [Fact]
    public void NativeConvolutionsGiveExactInputGradientsAndTheProbeTellsWhetherOneDnnDoes()
    {
        using var scope = NewDisposeScope();
        using var grad = enable_grad();
        var generator = new Generator(3);
        var x = randn([4, 64, 8, 8], generator: generator);
        var upstream = randn([4, 4, 8, 8], generator: generator);
        var weight = randn([4, 64, 3, 3], generator: generator) * 0.05f;
        Tensor InputGradient(ScalarType type)
        {
            var input = x.to(type).detach().clone().requires_grad_(true);   // a fresh leaf: x.to(Float32) is x, whose grad would accumulate
            (nn.functional.conv2d(input, weight.to(type), padding: [1, 1]) * upstream.to(type)).sum().backward();
            return input.grad!.to(ScalarType.Float64);
        }
        var exact = InputGradient(ScalarType.Float64);
        bool Close(Tensor g) => (g - exact).abs().max().item<double>() < 1e-5 * exact.abs().max().item<double>();
        using (NativeRuntime.NativeConvolutions())
            Assert.True(Close(InputGradient(ScalarType.Float32)), "native kernel");
        if (NativeRuntime.OneDnnConvolutionBackwardIsExact) Assert.True(Close(InputGradient(ScalarType.Float32)), "oneDNN");
    }
}
