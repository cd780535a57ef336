using DiffusionCache.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Runtime;

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
}
