using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DiffusionCache.Models.Layers;

/// <summary>diffusers <c>BasicTransformerBlock</c> (layer_norm type): self-attention, cross-attention, GEGLU
/// feed-forward, each pre-normed and residual.</summary>
public sealed class BasicTransformerBlock : nn.Module<Tensor, Tensor?, Tensor>
{
    /// <summary>Submodules are registered explicitly under diffusers' names; TorchSharp's reflective
    /// registration would add them again under C# field names.</summary>
    protected override void RegisterComponents() { }

    private readonly LayerNorm _norm1, _norm2, _norm3;
    private readonly Attention _attn1, _attn2;
    private readonly FeedForward _ff;
    private readonly bool _onlyCrossAttention;

    /// <summary>Builds the block with freshly initialised weights.</summary>
    /// <param name="dim">Token width (the transformer's inner width).</param>
    /// <param name="heads">Attention heads of both attentions.</param>
    /// <param name="dimHead">Width of each head.</param>
    /// <param name="crossAttentionDim">Width of the context that <c>attn2</c> attends to.</param>
    /// <param name="onlyCrossAttention">diffusers' <c>only_cross_attention</c>: <c>attn1</c> attends to the context
    /// too instead of to the tokens.</param>
    public BasicTransformerBlock(int dim, int heads, int dimHead, int crossAttentionDim, bool onlyCrossAttention)
        : base(nameof(BasicTransformerBlock))
    {
        _onlyCrossAttention = onlyCrossAttention;
        _norm1 = nn.LayerNorm([dim], 1e-5, elementwise_affine: true);
        _attn1 = new Attention(new AttentionOptions(dim, heads, dimHead)
        {
            CrossAttentionDim = onlyCrossAttention ? crossAttentionDim : null,
        });
        _norm2 = nn.LayerNorm([dim], 1e-5, elementwise_affine: true);
        _attn2 = new Attention(new AttentionOptions(dim, heads, dimHead) { CrossAttentionDim = crossAttentionDim });
        _norm3 = nn.LayerNorm([dim], 1e-5, elementwise_affine: true);
        _ff = new FeedForward(dim);
        register_module("norm1", _norm1);
        register_module("attn1", _attn1);
        register_module("norm2", _norm2);
        register_module("attn2", _attn2);
        register_module("norm3", _norm3);
        register_module("ff", _ff);
    }

    /// <summary>x += attn1(norm1(x)); x += attn2(norm2(x), context); x += ff(norm3(x)).</summary>
    /// <param name="x">Tokens, [B, N, dim].</param>
    /// <param name="context">Cross-attention context [B, L, crossAttentionDim]; null makes <c>attn2</c>
    /// self-attention.</param>
    /// <returns>[B, N, dim].</returns>
    public override Tensor forward(Tensor x, Tensor? context)
    {
        using var scope = NewDisposeScope();
        x = _attn1.call(_norm1.call(x), _onlyCrossAttention ? context : null) + x;
        x = _attn2.call(_norm2.call(x), context) + x;
        x = _ff.call(_norm3.call(x)) + x;
        return x.MoveToOuterDisposeScope();
    }
}
