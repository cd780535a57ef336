using System.CommandLine;
using DiffusionCache.Pipelines;
using DiffusionCache.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Cli.Commands;

/// <summary>Where and how a command runs its model: <c>--device cpu|cuda[:N]</c>, <c>--dtype fp32|bf16|fp16</c>,
/// <c>--threads N</c> (one set of options for every command that runs a model).</summary>
/// <param name="float32Only">Why this command computes in float32 only (training): <c>--dtype</c> then accepts fp32
/// alone and refuses any other value with this reason, before any work; null: every type.</param>
internal sealed class RuntimeOptions(string? float32Only = null)
{
    private readonly Option<string> _device = new("--device") { Description = "cpu, cuda or cuda:N (CUDA needs the TorchSharp-cuda backend)", DefaultValueFactory = _ => "cpu" };
    private readonly Option<string> _dtype = new("--dtype")
    {
        Description = float32Only is null ? "compute type of the models: fp32, bf16 (runs on CPU too) or fp16 (GPU)" : $"compute type: fp32 only ({float32Only})",
        DefaultValueFactory = _ => "fp32",
    };
    private readonly Option<int?> _threads = new("--threads") { Description = "intra-op CPU threads (default: libtorch's choice, one per core)" };
    private readonly Option<string> _convolutions = new("--convolutions")
    {
        Description = "CPU convolution kernels: libtorch (its own dispatch, deterministic), tuned (per shape the faster of oneDNN and the native kernel, timed at first use: much faster for wide layers on small maps, e.g. SDXL) or native",
        DefaultValueFactory = _ => "libtorch",
    };

    /// <summary>Adds <c>--device</c>, <c>--dtype</c> and <c>--threads</c>.</summary>
    public void AddTo(Command command)
    {
        command.Options.Add(_device);
        command.Options.Add(_dtype);
        AddThreadsTo(command);
    }

    /// <summary>Adds <c>--threads</c> and <c>--convolutions</c> alone, for a command that always runs float32 on the CPU.</summary>
    public void AddThreadsTo(Command command)
    {
        command.Options.Add(_threads);
        command.Options.Add(_convolutions);
    }

    /// <summary>Checks the choices (before any work), sets the thread count and returns how to load models.</summary>
    public PipelineLoadOptions Apply(ParseResult parse)
    {
        string dtypeName = parse.GetValue(_dtype)!;
        var dtype = ParseDtype(dtypeName, "--dtype");
        if (float32Only is not null && dtype != ScalarType.Float32)
            throw new DiffusionCacheException($"--dtype {dtypeName}: this command runs in float32 only ({float32Only})");
        var device = Device(parse.GetValue(_device)!);
        if (dtype == ScalarType.Float16 && device.type == DeviceType.CPU)
            throw new DiffusionCacheException("--dtype fp16 needs a GPU (--device cuda); on CPU use bf16");
        ApplyThreads(parse);
        return new PipelineLoadOptions(dtype, device.type == DeviceType.CPU ? null : device);
    }

    /// <summary>The convolution kernels by the names <c>--convolutions</c> takes.</summary>
    public static ConvolutionKernelChoice ParseConvolutions(string name) => name switch
    {
        "libtorch" => ConvolutionKernelChoice.LibTorch,
        "tuned" => ConvolutionKernelChoice.Tuned,
        "native" => ConvolutionKernelChoice.Native,
        var other => throw new DiffusionCacheException($"--convolutions '{other}': expected libtorch, tuned or native"),
    };

    /// <summary>A compute type by the names the options take (fp32/float32, bf16/bfloat16, fp16/float16).</summary>
    public static ScalarType ParseDtype(string name, string option) => name switch
    {
        "fp32" or "float32" => ScalarType.Float32,
        "bf16" or "bfloat16" => ScalarType.BFloat16,
        "fp16" or "float16" => ScalarType.Float16,
        var other => throw new DiffusionCacheException($"{option} '{other}': expected fp32, bf16 or fp16"),
    };

    /// <summary>Checks <c>--threads</c> and <c>--convolutions</c>; sets the intra-op thread count when it is given and
    /// the convolution kernels.</summary>
    public void ApplyThreads(ParseResult parse)
    {
        ConvolutionKernels.Choice = ParseConvolutions(parse.GetValue(_convolutions)!);
        if (parse.GetValue(_threads) is int threads)
        {
            if (threads < 1) throw new DiffusionCacheException($"--threads must be at least 1, got {threads}");
            set_num_threads(threads);
        }
    }

    /// <summary>The device models are placed on: the options' device, or the CPU when they name none.</summary>
    public static Device DeviceOf(PipelineLoadOptions load) => load.Device ?? CPU;

    /// <summary>The names a report gives the compute type and device, e.g. ("bf16", "cpu").</summary>
    public static (string Dtype, string Device) Describe(PipelineLoadOptions load) => (load.Dtype switch
    {
        ScalarType.BFloat16 => "bf16",
        ScalarType.Float16 => "fp16",
        ScalarType.Float32 => "fp32",
        var other => other.ToString(),
    }, DeviceOf(load).ToString());

    /// <summary>Places a freshly built float32 model (random weights) on the options' device and compute type, as the
    /// loaders place the models they read.</summary>
    public static T Place<T>(T model, PipelineLoadOptions load) where T : nn.Module
    {
        if (load.Device is not null) model.to(load.Device);
        if (load.Dtype != ScalarType.Float32) model.to(load.Dtype);
        return model;
    }

    private static Device Device(string name)
    {
        if (name == "cpu") return CPU;
        if (name != "cuda" && !name.StartsWith("cuda:", StringComparison.Ordinal))
            throw new DiffusionCacheException($"--device '{name}': expected cpu, cuda or cuda:N");
        if (!cuda.is_available())
            throw new DiffusionCacheException($"--device {name}: this build has no CUDA backend or no GPU is visible (it references TorchSharp-cpu; see README, GPU)");
        int index = name == "cuda" ? 0 : int.TryParse(name[5..], out int i) && i >= 0 ? i
            : throw new DiffusionCacheException($"--device '{name}': expected cuda:N with N a GPU index");
        if (index >= cuda.device_count()) throw new DiffusionCacheException($"--device {name}: only {cuda.device_count()} GPU(s) visible");
        return new Device(DeviceType.CUDA, index);
    }
}
