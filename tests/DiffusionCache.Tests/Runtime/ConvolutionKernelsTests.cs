using DiffusionCache.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Runtime;

/// <summary><see cref="ConvolutionKernels"/> sets libtorch's process-wide oneDNN switch around calls: these tests run
/// alone.</summary>
[Collection(LibtorchSwitches.Name)]
public sealed class ConvolutionKernelsTests
{
    // 2 x 256 x 16 x 16 through a 3x3 convolution to 256 channels: 3e8 multiply-accumulates, large enough to be tuned.
    private static (TorchSharp.Modules.Conv2d Conv, Tensor X) Large(ulong seed)
    {
        var generator = new Generator(seed);
        var conv = nn.Conv2d(256, 256, 3, padding: 1);
        using (no_grad())
        {
            conv.weight!.copy_(randn([256, 256, 3, 3], generator: generator) * 0.02f);
            conv.bias!.copy_(randn([256], generator: generator));
        }
        return (conv, randn([2, 256, 16, 16], generator: generator));
    }

    private static T With<T>(ConvolutionKernelChoice choice, Func<T> body)
    {
        var before = ConvolutionKernels.Choice;
        ConvolutionKernels.Choice = choice;
        try
        {
            return body();
        }
        finally
        {
            ConvolutionKernels.Choice = before;
        }
    }

    [Theory]
    [InlineData(ConvolutionKernelChoice.LibTorch)]
    [InlineData(ConvolutionKernelChoice.Tuned)]
    [InlineData(ConvolutionKernelChoice.Native)]
    public void Every_choice_computes_the_convolution(ConvolutionKernelChoice choice)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var (conv, x) = Large(1);
        using var _ = conv;
        var exact = nn.functional.conv2d(x.to(ScalarType.Float64), conv.weight!.to(ScalarType.Float64), conv.bias!.to(ScalarType.Float64), padding: [1, 1]);
        var y = With(choice, () => ConvolutionKernels.Run(conv, x));
        Assert.True((y.to(ScalarType.Float64) - exact).abs().max().item<double>() < 1e-4 * exact.abs().max().item<double>());
    }

    [Fact]
    public void Tuning_decides_once_per_shape_and_later_calls_compute_what_the_tuning_call_did()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        ConvolutionKernels.ForgetDecisions();
        var (conv, x) = Large(2);
        using var _ = conv;
        var (first, second) = With(ConvolutionKernelChoice.Tuned, () => (ConvolutionKernels.Run(conv, x), ConvolutionKernels.Run(conv, x)));
        var decision = Assert.Single(ConvolutionKernels.Decisions);
        Assert.Contains("[2,256,16,16]", decision.Key);
        Assert.True(decision.Value.LibTorchMs > 0 && decision.Value.NativeMs > 0);
        Assert.Equal(decision.Value.Native, decision.Value.NativeMs < ConvolutionKernels.NativeMargin * decision.Value.LibTorchMs);
        Assert.True(first.eq(second).all().item<bool>());   // the same kernel, bit for bit

        Assert.StartsWith($"tuned convolutions: {(decision.Value.Native ? 1 : 0)} of 1 shapes on the native kernel", ConvolutionKernels.Summary());

        // Another batch size is another shape.
        With(ConvolutionKernelChoice.Tuned, () => ConvolutionKernels.Run(conv, x[0..1]));
        Assert.Equal(2, ConvolutionKernels.Decisions.Count);
    }

    [Fact]
    public void A_shape_whose_native_columns_would_be_too_large_is_not_tuned()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        ConvolutionKernels.ForgetDecisions();
        var (conv, x) = Large(4);
        using var _ = conv;
        long limit = ConvolutionKernels.MaximumNativeColumnsBytes;
        ConvolutionKernels.MaximumNativeColumnsBytes = 256L * 9 * 16 * 16 * 4 - 1;   // one byte under this shape's columns
        try
        {
            var y = With(ConvolutionKernelChoice.Tuned, () => ConvolutionKernels.Run(conv, x));
            Assert.Empty(ConvolutionKernels.Decisions);
            Assert.True(y.eq(conv.call(x)).all().item<bool>());
        }
        finally
        {
            ConvolutionKernels.MaximumNativeColumnsBytes = limit;
        }
    }

    [Fact]
    public void Small_convolutions_and_recorded_gradients_keep_libtorchs_dispatch()
    {
        using var scope = NewDisposeScope();
        ConvolutionKernels.ForgetDecisions();
        using var small = nn.Conv2d(8, 8, 3, padding: 1);
        var tiny = randn([1, 8, 8, 8]);
        var (conv, x) = Large(3);
        using var _ = conv;
        Tensor withGrad = With(ConvolutionKernelChoice.Tuned, () =>
        {
            using (no_grad()) ConvolutionKernels.Run(small, tiny);
            using (enable_grad()) return ConvolutionKernels.Run(conv, x);
        });
        Assert.Empty(ConvolutionKernels.Decisions);
        Assert.Null(ConvolutionKernels.Summary());
        Assert.True(withGrad.requires_grad);
        using (no_grad()) Assert.True(withGrad.detach().eq(conv.call(x)).all().item<bool>());
    }
}
