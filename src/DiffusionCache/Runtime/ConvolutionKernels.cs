using System.Collections.Concurrent;
using System.Diagnostics;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DiffusionCache.Runtime;

/// <summary>Which CPU kernels run the models' 2-D convolutions.</summary>
public enum ConvolutionKernelChoice
{
    /// <summary>libtorch's own dispatch (oneDNN where it applies): deterministic, the default.</summary>
    LibTorch,

    /// <summary>Per convolution shape, the faster of oneDNN and libtorch's native kernels, timed at first use (as
    /// cuDNN's benchmark mode does on GPUs): the same shape then always runs the same kernel in this process.</summary>
    Tuned,

    /// <summary>libtorch's native kernels (im2col and a matrix product) for every convolution, oneDNN off.</summary>
    Native,
}

/// <summary>
/// Runs a model's convolutions on the kernels <see cref="Choice"/> names. Why it exists: with oneDNN capped at AVX2 on
/// this project's AMD processors (<see cref="NativeRuntime"/>), oneDNN's forward convolution is about 5× slower than
/// libtorch's native kernel for wide layers on small maps — SDXL's 1280→1280 3×3 convolutions at 8×8 take 135 ms
/// instead of 28 ms at batch 2 — while it is up to 3.7× faster for narrower layers on larger maps (960→320 at 32×32:
/// 56 vs 210 ms), so neither kernel alone is right and the choice must be measured per shape. libtorch binds no per-call kernel choice, so the process-
/// wide oneDNN switch is set around each call: convolutions must run from one thread at a time while
/// <see cref="Choice"/> is not <see cref="ConvolutionKernelChoice.LibTorch"/>. Only inference on the CPU is affected:
/// with gradients recording, or on another device, libtorch's dispatch runs unchanged.
/// </summary>
public static class ConvolutionKernels
{
    /// <summary>Convolutions smaller than this (multiply-accumulates per call) keep libtorch's dispatch: timing them
    /// would cost more than any kernel could save, and a choice made from noise would differ from run to run.</summary>
    public const double MinimumTunedMacs = 5e7;

    /// <summary>The native kernel must be at least this much faster (time ratio) to be chosen over libtorch's own
    /// dispatch, so that near ties keep the default and runs agree.</summary>
    public const double NativeMargin = 0.9;

    /// <summary>libtorch's native kernel unfolds each sample's input into a [C_in·k·k, H_out·W_out] matrix first; a
    /// shape whose matrix would exceed this many bytes (a VAE decoder's 3×3 convolutions at 1024×1024 need 4.8 GB) is
    /// not tuned but left to libtorch's dispatch, so tuning never costs that memory.</summary>
    internal static long MaximumNativeColumnsBytes { get; set; } = 256L << 20;

    private static readonly ConcurrentDictionary<string, Decision> s_decisions = new(StringComparer.Ordinal);

    /// <summary>The kernels used from now on, process-wide (the CLI's <c>--convolutions</c>).</summary>
    public static ConvolutionKernelChoice Choice { get; set; } = ConvolutionKernelChoice.LibTorch;

    /// <summary>What tuning decided so far, per shape key: the kernel picked and both timings.</summary>
    public static IReadOnlyDictionary<string, Decision> Decisions => s_decisions;

    /// <summary>One tuned shape: whether the native kernel won, and the best of two timed calls of each.</summary>
    public sealed record Decision(bool Native, double LibTorchMs, double NativeMs);

    /// <summary>One line on what tuning decided, e.g. "tuned convolutions: 9 of 24 shapes on the native kernel (one call
    /// of each: 1.23 s with oneDNN, 0.25 s native)"; null when nothing was tuned.</summary>
    public static string? Summary()
    {
        var all = s_decisions.Values.ToList();
        if (all.Count == 0) return null;
        var native = all.Where(d => d.Native).ToList();
        string S(double ms) => (ms / 1000).ToString("0.00", System.Globalization.CultureInfo.InvariantCulture);
        return $"tuned convolutions: {native.Count} of {all.Count} shapes on the native kernel" +
            (native.Count == 0 ? "" : $" (one call of each: {S(native.Sum(d => d.LibTorchMs))} s with oneDNN, {S(native.Sum(d => d.NativeMs))} s native)");
    }

    /// <summary>Forgets every tuned decision (tests; a process that changes machines does not exist).</summary>
    public static void ForgetDecisions() => s_decisions.Clear();

    /// <summary><paramref name="conv"/> applied to <paramref name="input"/> (hooks included) on the chosen kernels.</summary>
    /// <param name="conv">A model's convolution.</param>
    /// <param name="input">Its input.</param>
    public static Tensor Run(Conv2d conv, Tensor input)
    {
        var choice = Choice;
        if (choice == ConvolutionKernelChoice.LibTorch || input.device_type != DeviceType.CPU || is_grad_enabled())
            return conv.call(input);
        if (choice == ConvolutionKernelChoice.Native)
        {
            using (NativeRuntime.NativeConvolutions()) return conv.call(input);
        }
        var weight = conv.weight!;
        double macs = (double)input.shape[0] * weight.numel() * input.shape[2] * input.shape[3]
            / (conv.stride![0] * conv.stride[1]);
        long columns = weight.shape[1] * weight.shape[2] * weight.shape[3] * (input.shape[2] / conv.stride[0]) * (input.shape[3] / conv.stride[1])
            * input.ElementSize;
        if (macs < MinimumTunedMacs || columns > MaximumNativeColumnsBytes) return conv.call(input);
        string key = Key(conv, input);
        if (s_decisions.TryGetValue(key, out var decision))
        {
            if (!decision.Native) return conv.call(input);
            using (NativeRuntime.NativeConvolutions()) return conv.call(input);
        }
        return Tune(conv, input, key);
    }

    /// <summary>Times two calls on each kernel (the first call of a shape also builds oneDNN's primitive, so the best
    /// of two is the steady cost), then answers through the winner like any later call of the shape.</summary>
    private static Tensor Tune(Conv2d conv, Tensor input, string key)
    {
        double libtorchMs = double.MaxValue, nativeMs = double.MaxValue;
        for (int round = 0; round < 2; round++)
        {
            var clock = Stopwatch.StartNew();
            conv.forward(input).Dispose();
            libtorchMs = Math.Min(libtorchMs, clock.Elapsed.TotalMilliseconds);
            using (NativeRuntime.NativeConvolutions())
            {
                clock.Restart();
                conv.forward(input).Dispose();
                nativeMs = Math.Min(nativeMs, clock.Elapsed.TotalMilliseconds);
            }
        }
        var decision = s_decisions.GetOrAdd(key, new Decision(nativeMs < NativeMargin * libtorchMs, libtorchMs, nativeMs));
        if (!decision.Native) return conv.call(input);
        using (NativeRuntime.NativeConvolutions()) return conv.call(input);
    }

    private static string Key(Conv2d conv, Tensor input) =>
        $"{input.dtype} [{string.Join(",", input.shape)}] w[{string.Join(",", conv.weight!.shape)}] s{string.Join(",", conv.stride!)} " +
        $"p{string.Join(",", conv.padding ?? [])} d{string.Join(",", conv.dilation ?? [])} g{conv.groups}";
}
