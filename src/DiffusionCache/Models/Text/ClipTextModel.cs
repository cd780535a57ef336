using DiffusionCache.Models.Config;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DiffusionCache.Models.Text;

/// <summary>What a CLIP text model returns. <see cref="HiddenStates"/> (embeddings, then every layer's output, not
/// final-normalised) is filled only when asked for; <see cref="TextEmbeds"/> only by the projection variant.
/// The tensors belong to the caller.</summary>
/// <param name="LastHiddenState">[B, S, hidden_size], after <c>final_layer_norm</c>.</param>
/// <param name="PooledOutput">[B, hidden_size]: <paramref name="LastHiddenState"/> at each sequence's eos position
/// (see <see cref="ClipTextModel.PooledIndex"/>).</param>
/// <param name="HiddenStates">num_hidden_layers + 1 tensors of [B, S, hidden_size] (the embeddings, then each
/// layer's output, not final-normalised) when asked for; otherwise null.</param>
/// <param name="TextEmbeds">[B, projection_dim]: <c>text_projection</c> of the pooled output, for the projection
/// variant only; otherwise null.</param>
public sealed record ClipTextOutput(Tensor LastHiddenState, Tensor PooledOutput, IReadOnlyList<Tensor>? HiddenStates,
    Tensor? TextEmbeds) : IDisposable
{
    /// <summary>Disposes every tensor of the output.</summary>
    public void Dispose()
    {
        LastHiddenState.Dispose();
        PooledOutput.Dispose();
        TextEmbeds?.Dispose();
        foreach (var h in HiddenStates ?? []) h.Dispose();
    }
}

/// <summary>
/// transformers' <c>CLIPTextModel</c> and <c>CLIPTextModelWithProjection</c> (4.39), the text encoders of Stable
/// Diffusion: <c>text_model</c> (token + position embeddings, pre-LN encoder layers under a causal mask,
/// <c>final_layer_norm</c>) and, for the projection variant, <c>text_projection</c> applied to the pooled output.
/// Parameter names are transformers' state-dict keys. Called as SD pipelines call it: no attention mask.
/// </summary>
public sealed class ClipTextModel : nn.Module
{
    /// <summary>Submodules are registered explicitly under transformers' names; TorchSharp's reflective
    /// registration would add them again under C# field names.</summary>
    protected override void RegisterComponents() { }

    private readonly ClipTextTransformer _textModel;
    private readonly Linear? _textProjection;

    /// <summary>The config the model was built from.</summary>
    public ClipTextConfig Config { get; }
    /// <summary>Whether the model has <c>text_projection</c> (CLIPTextModelWithProjection), so that
    /// <see cref="Forward"/> fills <see cref="ClipTextOutput.TextEmbeds"/>.</summary>
    public bool HasProjection => _textProjection is not null;
    /// <summary>transformers' class name, as <c>architectures</c> in <c>config.json</c> names it.</summary>
    public string ClassName => HasProjection ? "CLIPTextModelWithProjection" : "CLIPTextModel";

    /// <summary>Builds the model with freshly initialised weights, in eval mode. Load weights with
    /// <see cref="Loading.TextEncoderLoader"/>.</summary>
    /// <param name="config">The text encoder's config.</param>
    /// <param name="withProjection">Adds <c>text_projection</c> (CLIPTextModelWithProjection).</param>
    public ClipTextModel(ClipTextConfig config, bool withProjection = false) : base(nameof(ClipTextModel))
    {
        Config = config;
        _textModel = new ClipTextTransformer(config);
        register_module("text_model", _textModel);
        if (withProjection)
        {
            _textProjection = nn.Linear(config.HiddenSize, config.ProjectionDim, hasBias: false);
            register_module("text_projection", _textProjection);
        }
        eval();
    }

    /// <summary>Encodes token ids as Stable Diffusion pipelines do: causal self-attention, no attention mask.</summary>
    /// <param name="inputIds">[B, S] int64, S at most <c>max_position_embeddings</c>.</param>
    /// <param name="outputHiddenStates">also return every layer's output (penultimate-layer conditioning needs it).</param>
    /// <returns>The encoder's outputs, on the model's device; the caller owns them (dispose the output).</returns>
    /// <exception cref="DiffusionCacheException"><paramref name="inputIds"/> is not [B, S] or is longer than
    /// <c>max_position_embeddings</c>.</exception>
    public ClipTextOutput Forward(Tensor inputIds, bool outputHiddenStates = false)
    {
        if (inputIds.dim() != 2) throw new DiffusionCacheException($"input_ids must be [B, S], got [{string.Join(",", inputIds.shape)}]");
        if (inputIds.shape[1] > Config.MaxPositionEmbeddings)
            throw new DiffusionCacheException($"input_ids have {inputIds.shape[1]} positions; the text encoder has {Config.MaxPositionEmbeddings}");
        using var scope = NewDisposeScope();
        var ids = inputIds.to(ScalarType.Int64, _textModel.Device);
        var (last, hidden) = _textModel.Forward(ids, outputHiddenStates);
        var pooled = last[arange(last.shape[0], device: last.device), PooledIndex(ids)];
        var embeds = _textProjection?.call(pooled);
        return new ClipTextOutput(last.MoveToOuterDisposeScope(), pooled.MoveToOuterDisposeScope(),
            hidden?.Select(h => h.MoveToOuterDisposeScope()).ToArray(), embeds?.MoveToOuterDisposeScope());
    }

    /// <summary>The final layer norm, for conditioning on an earlier layer (diffusers' <c>clip_skip</c>).</summary>
    public Tensor FinalLayerNorm(Tensor hidden) => _textModel.FinalLayerNorm(hidden);

    /// <summary>transformers 4.39's rule: with the legacy <c>eos_token_id</c> 2 the pooled position is the first
    /// maximal id (real CLIP's eos is its largest id); otherwise the first position holding eos.</summary>
    public Tensor PooledIndex(Tensor ids) =>
        Config.EosTokenId == 2 ? ids.argmax(-1) : ids.eq(Config.EosTokenId).to(ScalarType.Int32).argmax(-1);
}

/// <summary>transformers' <c>CLIPTextTransformer</c>: <c>embeddings</c>, <c>encoder.layers</c>, <c>final_layer_norm</c>.</summary>
internal sealed class ClipTextTransformer : nn.Module
{
    protected override void RegisterComponents() { }

    private readonly Embedding _tokenEmbedding, _positionEmbedding;
    private readonly ModuleList<ClipEncoderLayer> _layers;
    private readonly LayerNorm _finalLayerNorm;

    public ClipTextTransformer(ClipTextConfig c) : base("CLIPTextTransformer")
    {
        _tokenEmbedding = nn.Embedding(c.VocabSize, c.HiddenSize);
        _positionEmbedding = nn.Embedding(c.MaxPositionEmbeddings, c.HiddenSize);
        var embeddings = new ModuleGroup();
        embeddings.Add("token_embedding", _tokenEmbedding);
        embeddings.Add("position_embedding", _positionEmbedding);
        _layers = nn.ModuleList(Enumerable.Range(0, c.NumHiddenLayers).Select(_ => new ClipEncoderLayer(c)).ToArray());
        var encoder = new ModuleGroup();
        encoder.Add("layers", _layers);
        _finalLayerNorm = nn.LayerNorm(c.HiddenSize, c.LayerNormEps);
        register_module("embeddings", embeddings);
        register_module("encoder", encoder);
        register_module("final_layer_norm", _finalLayerNorm);
    }

    public Device Device => _tokenEmbedding.weight!.device;

    public (Tensor Last, List<Tensor>? Hidden) Forward(Tensor ids, bool keepHidden)
    {
        long s = ids.shape[1];
        var x = _tokenEmbedding.call(ids) + _positionEmbedding.call(arange(s, device: ids.device)).unsqueeze(0);
        var hidden = keepHidden ? new List<Tensor> { x } : null;
        foreach (var layer in _layers)
        {
            x = layer.call(x);
            hidden?.Add(x);
        }
        return (_finalLayerNorm.call(x), hidden);
    }

    public Tensor FinalLayerNorm(Tensor hidden) => _finalLayerNorm.call(hidden);
}

/// <summary>transformers' <c>CLIPEncoderLayer</c>: pre-LN self-attention under the causal mask, then the MLP, each
/// with a residual.</summary>
internal sealed class ClipEncoderLayer : nn.Module<Tensor, Tensor>
{
    protected override void RegisterComponents() { }

    private readonly LayerNorm _layerNorm1, _layerNorm2;
    private readonly Linear _qProj, _kProj, _vProj, _outProj, _fc1, _fc2;
    private readonly ClipTextConfig _c;

    public ClipEncoderLayer(ClipTextConfig c) : base("CLIPEncoderLayer")
    {
        _c = c;
        int d = c.HiddenSize;
        _qProj = nn.Linear(d, d);
        _kProj = nn.Linear(d, d);
        _vProj = nn.Linear(d, d);
        _outProj = nn.Linear(d, d);
        var attention = new ModuleGroup();
        attention.Add("k_proj", _kProj);
        attention.Add("v_proj", _vProj);
        attention.Add("q_proj", _qProj);
        attention.Add("out_proj", _outProj);
        _fc1 = nn.Linear(d, c.IntermediateSize);
        _fc2 = nn.Linear(c.IntermediateSize, d);
        var mlp = new ModuleGroup();
        mlp.Add("fc1", _fc1);
        mlp.Add("fc2", _fc2);
        _layerNorm1 = nn.LayerNorm(d, c.LayerNormEps);
        _layerNorm2 = nn.LayerNorm(d, c.LayerNormEps);
        register_module("self_attn", attention);
        register_module("layer_norm1", _layerNorm1);
        register_module("mlp", mlp);
        register_module("layer_norm2", _layerNorm2);
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = _layerNorm1.call(x);
        long b = h.shape[0], s = h.shape[1];
        Tensor Heads(Tensor t) => t.view(b, s, _c.NumAttentionHeads, _c.HeadDim).transpose(1, 2);
        // softmax(q k^T / sqrt(d) + causal mask) v; the fused kernel equals transformers' eager math up to rounding.
        var attended = nn.functional.scaled_dot_product_attention(Heads(_qProj.call(h)), Heads(_kProj.call(h)), Heads(_vProj.call(h)), is_casual: true);
        x = x + _outProj.call(attended.transpose(1, 2).reshape(b, s, _c.HiddenSize));
        var m = _fc1.call(_layerNorm2.call(x));
        m = _c.HiddenAct == "quick_gelu" ? m * nn.functional.sigmoid(1.702 * m) : nn.functional.gelu(m);
        return (x + _fc2.call(m)).MoveToOuterDisposeScope();
    }
}

/// <summary>A named group of submodules with no forward of its own (transformers' <c>embeddings</c>,
/// <c>encoder</c>, <c>self_attn</c>, <c>mlp</c> levels of the parameter names). TorchSharp's ModuleDict cannot be
/// converted with <c>to(dtype)</c> (its indexer trips the field scan), so the names are registered here.</summary>
internal sealed class ModuleGroup() : nn.Module("ModuleGroup")
{
    protected override void RegisterComponents() { }

    public void Add(string name, nn.Module module) => register_module(name, module);
}
