namespace DiffusionCache.Models.Seam;

/// <summary>What an addressable call site is, so that a policy can pick its targets (Block Caching: transformers
/// or resnets; DeepCache: leaf layers and whole blocks) without knowing model classes.</summary>
public enum BlockKind
{
    /// <summary><c>conv_in</c>: the first convolution, whose output is the first skip tensor.</summary>
    Stem,
    /// <summary><c>time_proj</c>, <c>time_embedding</c>, <c>class_embedding</c>.</summary>
    Embedding,
    /// <summary>A <c>ResnetBlock2D</c>: out = C(in) + shortcut(in) / output_scale_factor.</summary>
    Resnet,
    /// <summary>A <c>Transformer2DModel</c> (the papers' spatial transformer): out = C(in) + in.</summary>
    Transformer,
    /// <summary>A spatial self-attention <c>Attention</c> layer of the DDPM family (UNet2DModel).</summary>
    SelfAttention,
    Downsampler,
    Upsampler,
    /// <summary>A whole down block: output is the hidden state plus its skip tensors.</summary>
    DownBlock,
    MidBlock,
    UpBlock,
}
