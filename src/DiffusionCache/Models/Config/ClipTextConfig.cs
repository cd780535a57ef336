using System.Text.Json;

namespace DiffusionCache.Models.Config;

/// <summary>
/// The <c>config.json</c> of a transformers <c>CLIPTextModel</c> / <c>CLIPTextModelWithProjection</c> (the text
/// encoders of Stable Diffusion 1.x/2.x and SDXL). Keys that change the math are read strictly; the generic
/// <c>PretrainedConfig</c> bookkeeping that older transformers versions wrote into every config is accepted and
/// ignored; any other key is refused rather than silently ignored.
/// </summary>
public sealed record ClipTextConfig
{
    /// <summary>Rows of the token embedding (<c>vocab_size</c>; 49408 for CLIP's BPE vocabulary).</summary>
    public int VocabSize { get; init; } = 49408;
    /// <summary>Width of the token states and of the output (<c>hidden_size</c>): the context width the U-Net
    /// sees (768 for SD 1.x, 1024 for SD 2.x).</summary>
    public int HiddenSize { get; init; } = 512;
    /// <summary>Inner width of each layer's MLP (<c>intermediate_size</c>).</summary>
    public int IntermediateSize { get; init; } = 2048;
    /// <summary>Output width of <c>text_projection</c> (<c>projection_dim</c>); used only by the projection
    /// variant.</summary>
    public int ProjectionDim { get; init; } = 512;
    /// <summary>Number of encoder layers (<c>num_hidden_layers</c>).</summary>
    public int NumHiddenLayers { get; init; } = 12;
    /// <summary>Attention heads per layer (<c>num_attention_heads</c>); must divide <see cref="HiddenSize"/>.</summary>
    public int NumAttentionHeads { get; init; } = 8;
    /// <summary>Longest token sequence the model takes (<c>max_position_embeddings</c>; 77 for CLIP).</summary>
    public int MaxPositionEmbeddings { get; init; } = 77;
    /// <summary><c>quick_gelu</c> (CLIP ViT-L/14, SD 1.x) or <c>gelu</c> (OpenCLIP, SD 2.x and SDXL's second encoder).</summary>
    public string HiddenAct { get; init; } = "quick_gelu";
    /// <summary>Epsilon of every LayerNorm (<c>layer_norm_eps</c>).</summary>
    public double LayerNormEps { get; init; } = 1e-5;
    /// <summary>Chooses the pooled position: 2 (the legacy value of SD 1.x/2.x configs) means argmax of the ids.</summary>
    public int EosTokenId { get; init; } = 2;
    /// <summary><c>bos_token_id</c>; kept so that the config round-trips, not read by the forward pass.</summary>
    public int BosTokenId { get; init; } = 1;
    /// <summary><c>pad_token_id</c>; kept so that the config round-trips, not read by the forward pass.</summary>
    public int PadTokenId { get; init; } = 1;

    /// <summary>Width of each attention head: <see cref="HiddenSize"/> / <see cref="NumAttentionHeads"/>.</summary>
    public int HeadDim => HiddenSize / NumAttentionHeads;

    /// <summary>Written by transformers' PretrainedConfig for any model; none of them changes a text encoder's
    /// forward pass at inference.</summary>
    private static readonly string[] Bookkeeping =
    [
        "architectures", "model_type", "torch_dtype", "transformers_version", "initializer_range", "initializer_factor",
        "attention_dropout", "dropout", "hidden_dropout_prob", "return_dict", "output_hidden_states", "output_attentions",
        "torchscript", "use_bfloat16", "tf_legacy_loss", "pruned_heads", "tie_word_embeddings", "is_encoder_decoder",
        "is_decoder", "cross_attention_hidden_size", "add_cross_attention", "tie_encoder_decoder", "max_length",
        "min_length", "do_sample", "early_stopping", "num_beams", "num_beam_groups", "diversity_penalty", "temperature",
        "top_k", "top_p", "typical_p", "repetition_penalty", "length_penalty", "no_repeat_ngram_size",
        "encoder_no_repeat_ngram_size", "bad_words_ids", "num_return_sequences", "chunk_size_feed_forward",
        "output_scores", "return_dict_in_generate", "forced_bos_token_id", "forced_eos_token_id",
        "remove_invalid_values", "exponential_decay_length_penalty", "suppress_tokens", "begin_suppress_tokens",
        "finetuning_task", "id2label", "label2id", "tokenizer_class", "prefix", "sep_token_id", "decoder_start_token_id",
        "task_specific_params", "problem_type", "gradient_checkpointing",
    ];

    /// <summary>Reads and validates a text encoder's <c>config.json</c>; see <see cref="Read"/>.</summary>
    /// <param name="path">The config file.</param>
    /// <exception cref="DiffusionCacheException">The file is missing or not JSON, or <see cref="Read"/> refuses
    /// it.</exception>
    public static ClipTextConfig FromFile(string path)
    {
        var reader = ConfigReader.FromFile(path, out var doc);
        using (doc) return Read(reader);
    }

    /// <summary>Reads a CLIP text config strictly: <c>model_type</c> must be <c>clip_text_model</c>,
    /// <c>hidden_act</c> <c>quick_gelu</c> or <c>gelu</c>, sizes positive and divisible; transformers' generic
    /// bookkeeping keys are accepted, any other unknown key is refused.</summary>
    /// <param name="r">A reader over the config, not yet read from.</param>
    /// <exception cref="ConfigException">The config is malformed or asks for something not implemented.</exception>
    public static ClipTextConfig Read(ConfigReader r)
    {
        var d = new ClipTextConfig();
        var modelType = r.String("model_type", "clip_text_model");
        if (modelType != "clip_text_model") throw r.Error($"expected a CLIP text model config (model_type 'clip_text_model'), found '{modelType}'");
        var c = new ClipTextConfig
        {
            VocabSize = r.Int("vocab_size", d.VocabSize),
            HiddenSize = r.Int("hidden_size", d.HiddenSize),
            IntermediateSize = r.Int("intermediate_size", d.IntermediateSize),
            ProjectionDim = r.Int("projection_dim", d.ProjectionDim),
            NumHiddenLayers = r.Int("num_hidden_layers", d.NumHiddenLayers),
            NumAttentionHeads = r.Int("num_attention_heads", d.NumAttentionHeads),
            MaxPositionEmbeddings = r.Int("max_position_embeddings", d.MaxPositionEmbeddings),
            HiddenAct = r.String("hidden_act", d.HiddenAct)!,
            LayerNormEps = r.Double("layer_norm_eps", d.LayerNormEps),
            EosTokenId = r.Int("eos_token_id", d.EosTokenId),
            BosTokenId = r.Int("bos_token_id", d.BosTokenId),
            PadTokenId = r.Int("pad_token_id", d.PadTokenId),
        };
        r.Informative(Bookkeeping);
        r.EnsureAllRead();
        if (c.HiddenAct is not ("quick_gelu" or "gelu")) throw r.Unsupported("hidden_act", JsonSerializer.Serialize(c.HiddenAct));
        if (c.VocabSize < 1 || c.HiddenSize < 1 || c.IntermediateSize < 1 || c.NumHiddenLayers < 1 || c.NumAttentionHeads < 1 ||
            c.MaxPositionEmbeddings < 1 || c.ProjectionDim < 1)
            throw r.Error("vocab_size, hidden_size, intermediate_size, projection_dim, num_hidden_layers, num_attention_heads and max_position_embeddings must be positive");
        if (c.HiddenSize % c.NumAttentionHeads != 0)
            throw r.Error($"hidden_size {c.HiddenSize} is not divisible by num_attention_heads {c.NumAttentionHeads}");
        return c;
    }

    /// <summary>The config as transformers writes it (for the random-weight folders of benchmarks and tests).</summary>
    public string ToJson(string architecture) => JsonSerializer.Serialize(new SortedDictionary<string, object>(StringComparer.Ordinal)
    {
        ["architectures"] = new[] { architecture },
        ["model_type"] = "clip_text_model",
        ["vocab_size"] = VocabSize,
        ["hidden_size"] = HiddenSize,
        ["intermediate_size"] = IntermediateSize,
        ["projection_dim"] = ProjectionDim,
        ["num_hidden_layers"] = NumHiddenLayers,
        ["num_attention_heads"] = NumAttentionHeads,
        ["max_position_embeddings"] = MaxPositionEmbeddings,
        ["hidden_act"] = HiddenAct,
        ["layer_norm_eps"] = LayerNormEps,
        ["bos_token_id"] = BosTokenId,
        ["eos_token_id"] = EosTokenId,
        ["pad_token_id"] = PadTokenId,
    }, new JsonSerializerOptions { WriteIndented = true });

    /// <summary>CLIP ViT-L/14's text encoder, as Stable Diffusion 1.x ships it.</summary>
    public static ClipTextConfig StableDiffusion1 { get; } = new()
    {
        HiddenSize = 768, IntermediateSize = 3072, ProjectionDim = 768, NumHiddenLayers = 12, NumAttentionHeads = 12,
        HiddenAct = "quick_gelu", BosTokenId = 0, EosTokenId = 2,
    };

    /// <summary>OpenCLIP ViT-H/14's text encoder without its last layer, as Stable Diffusion 2.x ships it.</summary>
    public static ClipTextConfig StableDiffusion2 { get; } = new()
    {
        HiddenSize = 1024, IntermediateSize = 4096, ProjectionDim = 512, NumHiddenLayers = 23, NumAttentionHeads = 16,
        HiddenAct = "gelu", BosTokenId = 0, EosTokenId = 2,
    };

    /// <summary>OpenCLIP ViT-bigG/14's text encoder with its 1280-d projection, SDXL's second encoder
    /// (<c>text_encoder_2</c> of SDXL 1.0 base).</summary>
    public static ClipTextConfig StableDiffusionXL2 { get; } = new()
    {
        HiddenSize = 1280, IntermediateSize = 5120, ProjectionDim = 1280, NumHiddenLayers = 32, NumAttentionHeads = 20,
        HiddenAct = "gelu", BosTokenId = 0, EosTokenId = 2,
    };
}
