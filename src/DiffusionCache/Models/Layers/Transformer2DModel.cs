using TorchSharp;
using DiffusionCache.Runtime;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DiffusionCache.Models.Layers;

/// <summary>
/// diffusers <c>Transformer2DModel</c> for continuous input (the papers' "spatial transformer"): GroupNorm
/// (eps 1e-6), proj_in (1x1 conv or linear), BasicTransformerBlocks over the H*W tokens, proj_out, plus the
/// input. So out = C(in) + in (Block Caching eq. 4).
/// </summary>
public sealed class Transformer2DModel : nn.Module<Tensor, Tensor?, Tensor>
{
    /// <summary>Submodules are registered explicitly under diffusers' names; TorchSharp's reflective
    /// registration would add them again under C# field names.</summary>
    protected override void RegisterComponents() { }

    private readonly GroupNorm _norm;
    private readonly nn.Module<Tensor, Tensor> _projIn, _projOut;
    private readonly ModuleList<BasicTransformerBlock> _blocks;
    private readonly bool _linear;
    private readonly int _inner;

    /// <summary>Builds the layer with freshly initialised weights.</summary>
    /// <param name="channels">Channels of the feature map it takes and returns.</param>
    /// <param name="heads">Attention heads.</param>
    /// <param name="dimHead">Width of each head; the tokens are <paramref name="heads"/> × <paramref name="dimHead"/>
    /// wide.</param>
    /// <param name="layers">Number of <see cref="BasicTransformerBlock"/>s
    /// (<c>transformer_layers_per_block</c>).</param>
    /// <param name="crossAttentionDim">Width of the context.</param>
    /// <param name="groups">GroupNorm groups of <c>norm</c>.</param>
    /// <param name="useLinearProjection">proj_in/proj_out are linear layers on the tokens (SD 2.x, SDXL) rather
    /// than 1x1 convolutions (SD 1.x).</param>
    /// <param name="onlyCrossAttention">diffusers' <c>only_cross_attention</c>, passed to every block.</param>
    public Transformer2DModel(int channels, int heads, int dimHead, int layers, int crossAttentionDim, int groups,
        bool useLinearProjection, bool onlyCrossAttention) : base(nameof(Transformer2DModel))
    {
        _linear = useLinearProjection;
        _inner = heads * dimHead;
        _norm = Norms.GroupNorm(groups, channels, 1e-6);
        _projIn = useLinearProjection ? nn.Linear(channels, _inner) : nn.Conv2d(channels, _inner, 1);
        _blocks = nn.ModuleList(Enumerable.Range(0, layers)
            .Select(_ => new BasicTransformerBlock(_inner, heads, dimHead, crossAttentionDim, onlyCrossAttention)).ToArray());
        _projOut = useLinearProjection ? nn.Linear(_inner, channels) : nn.Conv2d(_inner, channels, 1);
        register_module("norm", _norm);
        register_module("proj_in", _projIn);
        register_module("transformer_blocks", _blocks);
        register_module("proj_out", _projOut);
    }

    /// <summary>C(x) + x, where C runs the transformer blocks over the H*W tokens.</summary>
    /// <param name="x">[B, channels, H, W].</param>
    /// <param name="context">Cross-attention context [B, L, crossAttentionDim].</param>
    /// <returns>[B, channels, H, W].</returns>
    public override Tensor forward(Tensor x, Tensor? context)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], h = x.shape[2], w = x.shape[3];
        var hidden = _norm.call(x);
        hidden = _linear
            ? _projIn.call(ToTokens(hidden))
            : ToTokens(ConvolutionKernels.Run((Conv2d)_projIn, hidden));
        foreach (var block in _blocks) hidden = block.call(hidden, context);
        hidden = _linear
            ? ToImage(_projOut.call(hidden), b, h, w)
            : ConvolutionKernels.Run((Conv2d)_projOut, ToImage(hidden, b, h, w));
        return (hidden + x).MoveToOuterDisposeScope();
    }

    private static Tensor ToTokens(Tensor t) => t.permute(0, 2, 3, 1).reshape(t.shape[0], t.shape[2] * t.shape[3], t.shape[1]);

    private static Tensor ToImage(Tensor t, long b, long h, long w) =>
        t.reshape(b, h, w, t.shape[2]).permute(0, 3, 1, 2).contiguous();
}
