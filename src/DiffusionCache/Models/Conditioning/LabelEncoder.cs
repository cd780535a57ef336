using System.Text.Json;
using DiffusionCache.Models.Config;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DiffusionCache.Models.Conditioning;

/// <summary>Config of <see cref="LabelEncoder"/> (<c>label_encoder/config.json</c>).</summary>
/// <param name="NumLabels">Number of real classes (<c>num_labels</c>); the null label is one more.</param>
/// <param name="TokensPerLabel">Context tokens per label (<c>tokens_per_label</c>).</param>
/// <param name="EmbeddingDim">Width of each token (<c>embedding_dim</c>): the U-Net's cross-attention width.</param>
public sealed record LabelEncoderConfig(int NumLabels, int TokensPerLabel, int EmbeddingDim)
{
    /// <summary>Reads and validates <c>label_encoder/config.json</c>.</summary>
    /// <param name="path">Path of the config file.</param>
    /// <exception cref="DiffusionCacheException">The file is missing or not JSON, names another class, has an
    /// unknown key, or a size is not positive.</exception>
    public static LabelEncoderConfig FromFile(string path)
    {
        var r = ConfigReader.FromFile(path, out var doc);
        using (doc)
        {
            var cls = r.String("_class_name", nameof(LabelEncoder));
            if (cls != nameof(LabelEncoder)) throw r.Error($"expected a LabelEncoder config, found '{cls}'");
            var config = new LabelEncoderConfig(r.Int("num_labels", 0), r.Int("tokens_per_label", 1), r.Int("embedding_dim", 0));
            r.EnsureAllRead();
            if (config.NumLabels < 1 || config.TokensPerLabel < 1 || config.EmbeddingDim < 1)
                throw r.Error("num_labels, tokens_per_label and embedding_dim must be positive");
            return config;
        }
    }

    /// <summary>The config as <see cref="FromFile"/> reads it: indented JSON with <c>_class_name</c>.</summary>
    public string ToJson() => JsonSerializer.Serialize(new Dictionary<string, object>
    {
        ["_class_name"] = nameof(LabelEncoder),
        ["num_labels"] = NumLabels,
        ["tokens_per_label"] = TokensPerLabel,
        ["embedding_dim"] = EmbeddingDim,
    }, new JsonSerializerOptions { WriteIndented = true });
}

/// <summary>
/// Turns class labels into a cross-attention context, in place of a text encoder: each label owns
/// <c>tokens_per_label</c> learned token embeddings. Label <c>num_labels</c> is the null label that classifier-free
/// guidance uses as its unconditional input (trained by label dropout). Several tokens per label let the
/// cross-attention weigh them differently per position; one token would make it a constant bias.
/// </summary>
public sealed class LabelEncoder : nn.Module<Tensor, Tensor>
{
    /// <summary>Submodules are registered explicitly under diffusers' names; TorchSharp's reflective
    /// registration would add them again under C# field names.</summary>
    protected override void RegisterComponents() { }

    private readonly Embedding _embedding;

    /// <summary>The config the encoder was built from.</summary>
    public LabelEncoderConfig Config { get; }
    /// <summary>The label of the unconditional input for classifier-free guidance: <c>num_labels</c>.</summary>
    public long NullLabel => Config.NumLabels;

    /// <summary>Builds the encoder with its embeddings drawn from N(0, 1) (one row per label and one for the null
    /// label).</summary>
    /// <param name="config">Label count and token shape.</param>
    public LabelEncoder(LabelEncoderConfig config) : base(nameof(LabelEncoder))
    {
        Config = config;
        _embedding = nn.Embedding(config.NumLabels + 1, config.TokensPerLabel * config.EmbeddingDim);
        using (no_grad()) _embedding.weight!.normal_(0, 1);
        register_module("embedding", _embedding);
    }

    /// <param name="labels">[B] int64 in 0..num_labels (num_labels = null label).</param>
    /// <returns>[B, tokens_per_label, embedding_dim]</returns>
    public override Tensor forward(Tensor labels)
    {
        if (labels.dim() != 1) throw new DiffusionCacheException($"labels must be [B], got [{string.Join(",", labels.shape)}]");
        using var flat = _embedding.call(labels.to(ScalarType.Int64));
        return flat.view(labels.shape[0], Config.TokensPerLabel, Config.EmbeddingDim);
    }

    /// <summary>The unconditional context of classifier-free guidance: <see cref="NullLabel"/>'s tokens for every
    /// batch element.</summary>
    /// <param name="batch">Batch size B.</param>
    /// <param name="device">The device the encoder's weights are on.</param>
    /// <returns>[B, tokens_per_label, embedding_dim].</returns>
    public Tensor Null(long batch, Device device) =>
        forward(full([batch], NullLabel, ScalarType.Int64, device));
}
