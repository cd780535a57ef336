using System.Text.Json;
using DiffusionCache.Formats;
using DiffusionCache.Formats.Safetensors;
using DiffusionCache.Models.Autoencoders;
using DiffusionCache.Models.Conditioning;
using DiffusionCache.Models.Config;
using DiffusionCache.Models.Loading;
using DiffusionCache.Models.UNets;
using DiffusionCache.Schedulers;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Pipelines;

/// <summary>
/// A diffusers-style pipeline folder of a class-conditional latent diffusion model: <c>model_index.json</c>,
/// <c>unet/</c>, <c>vae/</c>, <c>label_encoder/</c> (our component, in place of a text encoder) and
/// <c>scheduler/</c>.
/// </summary>
public static class LatentPipelineFolder
{
    public const string PipelineClass = "ClassConditionalLatentDiffusionPipeline";

    public static void WriteComponent(string pipelineDir, string component, string configJson, nn.Module module,
        string stem = "diffusion_pytorch_model")
    {
        string dir = Path.Combine(pipelineDir, component);
        string temp = Path.Combine(pipelineDir, $".{component}.tmp-{Environment.ProcessId}");
        if (Directory.Exists(temp)) Directory.Delete(temp, true);
        Directory.CreateDirectory(temp);
        try
        {
            File.WriteAllText(Path.Combine(temp, "config.json"), configJson);
            SafetensorsWriter.Write(Path.Combine(temp, stem + ".safetensors"),
                module.named_parameters().Select(p => KeyValuePair.Create(p.name, (Tensor)p.parameter)),
                new Dictionary<string, string> { ["format"] = "pt" });
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
            Directory.Move(temp, dir);
        }
        catch
        {
            if (Directory.Exists(temp)) Directory.Delete(temp, true);
            throw;
        }
    }

    public static void WriteScheduler(string pipelineDir, string schedulerJson)
    {
        Directory.CreateDirectory(Path.Combine(pipelineDir, "scheduler"));
        AtomicFile.WriteAllText(Path.Combine(pipelineDir, "scheduler", "scheduler_config.json"), schedulerJson);
    }

    public static void WriteIndex(string pipelineDir, string schedulerClass) =>
        AtomicFile.WriteAllText(Path.Combine(pipelineDir, "model_index.json"), JsonSerializer.Serialize(
            new SortedDictionary<string, object>(StringComparer.Ordinal)
            {
                ["_class_name"] = PipelineClass,
                ["_diffusers_version"] = DiffusersJson.Version,
                ["unet"] = new[] { "diffusers", "UNet2DConditionModel" },
                ["vae"] = new[] { "diffusers", "AutoencoderKL" },
                ["label_encoder"] = new[] { "diffusion_cache", nameof(LabelEncoder) },
                ["scheduler"] = new[] { "diffusers", schedulerClass },
            }, new JsonSerializerOptions { WriteIndented = true }));

    public static LabelEncoder LoadLabelEncoder(string pipelineDir, ScalarType dtype = ScalarType.Float32, Device? device = null)
    {
        string dir = Path.Combine(pipelineDir, "label_encoder");
        var encoder = new LabelEncoder(LabelEncoderConfig.FromFile(Path.Combine(dir, "config.json")));
        return ComponentLoader.LoadWeights(encoder, dir, null, dtype, device);
    }

    public static SchedulerConfig LoadSchedulerConfig(string pipelineDir) =>
        SchedulerConfig.FromFile(Path.Combine(pipelineDir, "scheduler", "scheduler_config.json"));
}
