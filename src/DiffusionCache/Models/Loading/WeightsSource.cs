using DiffusionCache.Formats.Safetensors;
using static TorchSharp.torch;

namespace DiffusionCache.Models.Loading;

/// <summary>The weights of a diffusers component folder as an <see cref="ITensorSource"/>.</summary>
internal sealed class WeightsSource : ITensorSource, IDisposable
{
    private readonly SafetensorsFile _file;

    private WeightsSource(SafetensorsFile file) => _file = file;

    public static WeightsSource Open(string dir, string? variant)
    {
        string name = variant is null ? "diffusion_pytorch_model.safetensors" : $"diffusion_pytorch_model.{variant}.safetensors";
        return new WeightsSource(SafetensorsFile.Open(Path.Combine(dir, name)));
    }

    public string Description => _file.FilePath;
    public IReadOnlyCollection<string> Names => _file.Entries.Select(e => e.Name).ToArray();
    public SafetensorsEntry Entry(string name) => _file.Entry(name);
    public Tensor Load(string name, ScalarType? dtype = null, Device? device = null) => _file.Load(name, dtype, device);
    public void Dispose() => _file.Dispose();
}
