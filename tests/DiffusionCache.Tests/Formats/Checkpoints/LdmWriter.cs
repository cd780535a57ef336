using DiffusionCache.Formats.Checkpoints;
using DiffusionCache.Formats.Safetensors;
using DiffusionCache.Models.Autoencoders;
using DiffusionCache.Models.Text;
using DiffusionCache.Models.UNets;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Formats.Checkpoints;

/// <summary>Writes SD 1.x models as one LDM-layout single file through our own key maps backwards (file key of each
/// diffusers name, linear weights of the VAE attention as 1x1 convolutions). For round trips of configs the golden
/// file does not cover and for memory measurements; agreement with the real layout is the golden tests' job.</summary>
internal static class LdmWriter
{
    public static void WriteSd1(string path, UNet2DConditionModel unet, AutoencoderKL vae, ClipTextModel text)
    {
        var tensors = new List<KeyValuePair<string, Tensor>>();
        Add(tensors, LdmKeyMap.UNet(unet.Config), unet);
        Add(tensors, LdmKeyMap.Vae(vae.Config), vae);
        Add(tensors, LdmKeyMap.ClipText(), text);
        SafetensorsWriter.Write(path, tensors);
    }

    private static void Add(List<KeyValuePair<string, Tensor>> tensors, LdmKeyMap map, nn.Module model)
    {
        foreach (var (name, p) in model.named_parameters())
        {
            string key = map.FileKey(name) ?? throw new InvalidOperationException($"no file key for {name}");
            var target = map.Map(key)!.Single(t => t.Name == name);
            var value = p.detach();
            tensors.Add(KeyValuePair.Create(key, target.Change == LdmChange.ConvToLinear ? value.reshape([.. value.shape, 1, 1]) : value));
        }
    }
}
