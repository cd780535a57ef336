using System.CommandLine;
using DiffusionCache.Pipelines;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Cli.Commands;

/// <summary>Where and how a command runs its model: <c>--device cpu|cuda[:N]</c>, <c>--dtype fp32|bf16|fp16</c>,
/// <c>--threads N</c> (one set of options for every command that loads a pipeline).</summary>
internal sealed class RuntimeOptions
{
    private readonly Option<string> _device = new("--device") { Description = "cpu, cuda or cuda:N (CUDA needs the TorchSharp-cuda backend)", DefaultValueFactory = _ => "cpu" };
    private readonly Option<string> _dtype = new("--dtype") { Description = "compute type of the models: fp32, bf16 (runs on CPU too) or fp16 (GPU)", DefaultValueFactory = _ => "fp32" };
    private readonly Option<int?> _threads = new("--threads") { Description = "intra-op CPU threads (default: libtorch's choice, one per core)" };

    public void AddTo(Command command)
    {
        command.Options.Add(_device);
        command.Options.Add(_dtype);
        command.Options.Add(_threads);
    }

    /// <summary>Checks the choices (before any work), sets the thread count and returns how to load models.</summary>
    public PipelineLoadOptions Apply(ParseResult parse)
    {
        var dtype = parse.GetValue(_dtype) switch
        {
            "fp32" or "float32" => ScalarType.Float32,
            "bf16" or "bfloat16" => ScalarType.BFloat16,
            "fp16" or "float16" => ScalarType.Float16,
            var other => throw new DiffusionCacheException($"--dtype '{other}': expected fp32, bf16 or fp16"),
        };
        var device = Device(parse.GetValue(_device)!);
        if (dtype == ScalarType.Float16 && device.type == DeviceType.CPU)
            throw new DiffusionCacheException("--dtype fp16 needs a GPU (--device cuda); on CPU use bf16");
        if (parse.GetValue(_threads) is int threads)
        {
            if (threads < 1) throw new DiffusionCacheException($"--threads must be at least 1, got {threads}");
            set_num_threads(threads);
        }
        return new PipelineLoadOptions(dtype, device.type == DeviceType.CPU ? null : device);
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
