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
    /// <summary>A down block's <c>downsamplers.0</c> (<c>Downsample2D</c>, stride-2 conv); its output is also a
    /// skip tensor.</summary>
    Downsampler,
    /// <summary>An up block's <c>upsamplers.0</c> (<c>Upsample2D</c>: nearest-neighbour 2x, then a 3x3 conv).</summary>
    Upsampler,
    /// <summary>A whole down block: output is the hidden state plus its skip tensors.</summary>
    DownBlock,
    /// <summary>The whole mid block (<c>mid_block</c>) at the lowest resolution; output is its hidden state.</summary>
    MidBlock,
    /// <summary>A whole up block: consumes its skip tensors from the end of the down path; output is the hidden
    /// state.</summary>
    UpBlock,
    /// <summary>The whole denoiser call (path <c>unet</c>): input the sample, output the prediction. Step-level
    /// policies answer here; every other site is nested inside it.</summary>
    Model,
}
