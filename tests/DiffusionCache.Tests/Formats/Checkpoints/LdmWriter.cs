using DiffusionCache.Formats.Checkpoints;
using DiffusionCache.Formats.Safetensors;
using DiffusionCache.Models.Autoencoders;
using DiffusionCache.Models.Text;
using DiffusionCache.Models.UNets;
using DiffusionCache.Pipelines;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Formats.Checkpoints;

/// <summary>Writes models as one LDM-layout single file: U-Net and VAE through our own key maps backwards (file key of
/// each diffusers name, linear weights of the VAE attention as 1x1 convolutions), OpenCLIP text encoders written out
/// here as diffusers' <c>create_text_encoder_from_open_clip_checkpoint</c> reads them. For round trips of configs the
/// golden file does not cover and for memory measurements; agreement with the real layout is the golden tests' job.</summary>
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

    /// <summary>An SDXL pipeline as an SGM-layout single file (SDXL 1.0 base's key layout): U-Net with
    /// <c>label_emb.0.0/0.2</c>, VAE, CLIP under <c>conditioner.embedders.0.transformer.</c>, OpenCLIP with
    /// projection and <c>logit_scale</c> under <c>conditioner.embedders.1.model.</c>; <paramref name="edit"/> may
    /// change the tensor list before it is written.</summary>
    public static void WriteSdxl(string path, StableDiffusionXLPipeline pipeline, Action<List<KeyValuePair<string, Tensor>>>? edit = null)
    {
        var tensors = new List<KeyValuePair<string, Tensor>>();
        Add(tensors, LdmKeyMap.UNet(pipeline.UNet.Config), pipeline.UNet);
        Add(tensors, LdmKeyMap.Vae(pipeline.Vae.Config), pipeline.Vae);
        Add(tensors, LdmKeyMap.ClipText(LdmKeyMap.SdxlClipPrefix), pipeline.Prompts1.Encoder);
        tensors.AddRange(OpenClip(LdmKeyMap.SdxlOpenClipPrefix, pipeline.Prompts2.Encoder, extraLayers: 0, projection: true));
        edit?.Invoke(tensors);
        SafetensorsWriter.Write(path, tensors);
    }

    /// <summary>A CLIP text model in OpenCLIP's layout under <paramref name="prefix"/>: token and positional embedding,
    /// <c>ln_final</c>, per layer fused <c>attn.in_proj_weight/bias</c> (q, k, v stacked), <c>attn.out_proj</c>,
    /// <c>ln_1/ln_2</c>, <c>mlp.c_fc/c_proj</c>; <paramref name="extraLayers"/> random layers after the model's
    /// (SD 2.x files hold one more than the model uses); <c>text_projection</c> [width, projection] (the model's own,
    /// transposed, with <paramref name="projection"/>; else a random one, unused) and <c>logit_scale</c>.</summary>
    public static List<KeyValuePair<string, Tensor>> OpenClip(string prefix, ClipTextModel model, int extraLayers, bool projection)
    {
        var w = model.named_parameters().ToDictionary(x => x.name, x => (Tensor)x.parameter.detach());
        var config = model.Config;
        var file = new List<KeyValuePair<string, Tensor>>
        {
            new(prefix + "token_embedding.weight", w["text_model.embeddings.token_embedding.weight"]),
            new(prefix + "positional_embedding", w["text_model.embeddings.position_embedding.weight"]),
            new(prefix + "ln_final.weight", w["text_model.final_layer_norm.weight"]),
            new(prefix + "ln_final.bias", w["text_model.final_layer_norm.bias"]),
            new(prefix + "text_projection", projection ? w["text_projection.weight"].t().contiguous() : randn(config.HiddenSize, 5)),
            new(prefix + "logit_scale", tensor(4.6f)),
        };
        for (int i = 0; i < config.NumHiddenLayers + extraLayers; i++)
        {
            string o = $"{prefix}transformer.resblocks.{i}.";
            Tensor W(string name) => i < config.NumHiddenLayers ? w[$"text_model.encoder.layers.{i}.{name}"]
                : randn(w[$"text_model.encoder.layers.0.{name}"].shape);
            file.Add(new(o + "attn.in_proj_weight", cat([W("self_attn.q_proj.weight"), W("self_attn.k_proj.weight"), W("self_attn.v_proj.weight")], 0)));
            file.Add(new(o + "attn.in_proj_bias", cat([W("self_attn.q_proj.bias"), W("self_attn.k_proj.bias"), W("self_attn.v_proj.bias")], 0)));
            foreach (var (orig, name) in new[] { ("attn.out_proj", "self_attn.out_proj"), ("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"),
                         ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2") })
            {
                file.Add(new($"{o}{orig}.weight", W(name + ".weight")));
                file.Add(new($"{o}{orig}.bias", W(name + ".bias")));
            }
        }
        return file;
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
