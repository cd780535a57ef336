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
    /// <summary>The <c>_class_name</c> <see cref="WriteIndex"/> writes into <c>model_index.json</c>.</summary>
    public const string PipelineClass = "ClassConditionalLatentDiffusionPipeline";

    /// <summary>Writes the component folder <c>pipelineDir/component/</c>: <c>config.json</c> and the module's
    /// parameters (not its buffers) as <c>stem.safetensors</c>, in their own dtype. It is first written under a
    /// temporary name inside <paramref name="pipelineDir"/>, then replaces any existing component folder.</summary>
    /// <param name="pipelineDir">The pipeline folder (created if missing).</param>
    /// <param name="component">The component's folder name: <c>unet</c>, <c>vae</c>, <c>label_encoder</c>.</param>
    /// <param name="configJson">The component's <c>config.json</c> text.</param>
    /// <param name="module">The model whose <c>named_parameters()</c> are written under their own names.</param>
    /// <param name="stem">The weights file name without <c>.safetensors</c>.</param>
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

    /// <summary>Atomically writes <paramref name="schedulerJson"/> as <c>scheduler/scheduler_config.json</c>.</summary>
    /// <param name="pipelineDir">The pipeline folder.</param>
    /// <param name="schedulerJson">A diffusers scheduler config (see
    /// <see cref="SchedulerConfig.FromJson(string, string?)"/>).</param>
    public static void WriteScheduler(string pipelineDir, string schedulerJson)
    {
        Directory.CreateDirectory(Path.Combine(pipelineDir, "scheduler"));
        AtomicFile.WriteAllText(Path.Combine(pipelineDir, "scheduler", "scheduler_config.json"), schedulerJson);
    }

    /// <summary>Writes <c>model_index.json</c> atomically: <see cref="PipelineClass"/>, the diffusers
    /// <c>unet</c> and <c>vae</c>, our <c>label_encoder</c>, and the scheduler class.</summary>
    /// <param name="pipelineDir">The pipeline folder.</param>
    /// <param name="schedulerClass">The diffusers scheduler class name, e.g. <c>DDIMScheduler</c>.</param>
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

    /// <summary>Builds the label encoder of <c>label_encoder/config.json</c> and fills it strictly from the folder's
    /// weights; the caller owns (disposes) it.</summary>
    /// <param name="pipelineDir">The pipeline folder.</param>
    /// <param name="dtype">The compute type of the weights.</param>
    /// <param name="device">Where to place it; null: the CPU.</param>
    /// <exception cref="DiffusionCacheException">A missing or invalid config, or weights not matching it.</exception>
    public static LabelEncoder LoadLabelEncoder(string pipelineDir, ScalarType dtype = ScalarType.Float32, Device? device = null)
    {
        string dir = Path.Combine(pipelineDir, "label_encoder");
        var encoder = new LabelEncoder(LabelEncoderConfig.FromFile(Path.Combine(dir, "config.json")));
        return ComponentLoader.LoadWeights(encoder, dir, null, dtype, device);
    }

    /// <summary>Reads <c>scheduler/scheduler_config.json</c> of <paramref name="pipelineDir"/>.</summary>
    /// <exception cref="DiffusionCacheException">The file is missing or refused.</exception>
    public static SchedulerConfig LoadSchedulerConfig(string pipelineDir) =>
        SchedulerConfig.FromFile(Path.Combine(pipelineDir, "scheduler", "scheduler_config.json"));
}
