using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DiffusionCache.Models.Layers;

/// <summary>Options of diffusers' <c>Attention</c> that change its parameters or math.</summary>
/// <param name="QueryDim">Channels of the input and output (<c>query_dim</c>).</param>
/// <param name="Heads">Number of attention heads.</param>
/// <param name="DimHead">Width of each head; the inner width is <paramref name="Heads"/> ×
/// <paramref name="DimHead"/>.</param>
public sealed record AttentionOptions(int QueryDim, int Heads, int DimHead)
{
    /// <summary>Context width for cross-attention; null for self-attention.</summary>
    public int? CrossAttentionDim { get; init; }
    /// <summary>Whether to_q, to_k and to_v have biases (diffusers' <c>bias</c>): true in the spatial self-attention
    /// of UNet2DModel and the VAE, false in transformer blocks.</summary>
    public bool QkvBias { get; init; }
    /// <summary>Spatial form (UNet2DModel): GroupNorm on the input, [B,C,H,W] in and out, residual add.</summary>
    public int? GroupNormGroups { get; init; }
    /// <summary>Epsilon of the GroupNorm of the spatial form.</summary>
    public double Eps { get; init; } = 1e-5;
    /// <summary>Adds the input back to the output (diffusers' <c>residual_connection</c>), before the
    /// rescale.</summary>
    public bool ResidualConnection { get; init; }
    /// <summary>Divides the output, after the residual add, by this (diffusers' <c>rescale_output_factor</c>; the
    /// DDPM mid block uses <c>mid_block_scale_factor</c>).</summary>
    public double RescaleOutputFactor { get; init; } = 1.0;
}

/// <summary>
/// diffusers <c>Attention</c>: multi-head softmax(Q K^T / sqrt(d)) V with to_q/to_k/to_v/to_out.0. Uses libtorch's
/// fused scaled_dot_product_attention, which accumulates in float32 for half types (so diffusers'
/// upcast_attention/upcast_softmax are implied) and equals the plain formula up to float rounding.
/// </summary>
public sealed class Attention : nn.Module<Tensor, Tensor?, Tensor>
{
    private readonly AttentionOptions _o;
    private readonly GroupNorm? _groupNorm;
    private readonly Linear _toQ, _toK, _toV;
    private readonly ModuleList<nn.Module<Tensor, Tensor>> _toOut;

    /// <summary>The options the layer was built with (the blocks read them to tell a plain residual layer).</summary>
    public AttentionOptions Options => _o;

    /// <summary>Builds the layer with freshly initialised weights (<c>group_norm</c> only when
    /// <see cref="AttentionOptions.GroupNormGroups"/> is set).</summary>
    /// <param name="options">Widths, heads and the options that change the math.</param>
    public Attention(AttentionOptions options) : base(nameof(Attention))
    {
        _o = options;
        int inner = options.Heads * options.DimHead;
        int kvDim = options.CrossAttentionDim ?? options.QueryDim;
        if (options.GroupNormGroups is int g)
        {
            _groupNorm = Norms.GroupNorm(g, options.QueryDim, options.Eps);
            register_module("group_norm", _groupNorm);
        }
        _toQ = nn.Linear(options.QueryDim, inner, hasBias: options.QkvBias);
        _toK = nn.Linear(kvDim, inner, hasBias: options.QkvBias);
        _toV = nn.Linear(kvDim, inner, hasBias: options.QkvBias);
        // diffusers' to_out is [Linear, Dropout]; only index 0 holds parameters.
        _toOut = nn.ModuleList<nn.Module<Tensor, Tensor>>(nn.Linear(inner, options.QueryDim, hasBias: true), nn.Dropout(0.0));
        register_module("to_q", _toQ);
        register_module("to_k", _toK);
        register_module("to_v", _toV);
        register_module("to_out", _toOut);
    }

    /// <summary>Children are registered explicitly under diffusers' names. TorchSharp's default would, once this
    /// module is registered in a parent, register every module field again under its C# field name, so that
    /// <c>state_dict()</c> listed each tensor twice.</summary>
    protected override void RegisterComponents() { }

    /// <summary>Multi-head attention of <paramref name="hidden"/> to itself or to <paramref name="context"/>. A 4-D
    /// input is the spatial form: its H×W positions are the tokens (group-normed first when configured), and the
    /// output is reshaped back.</summary>
    /// <param name="hidden">[B, N, C], or [B, C, H, W] for the spatial form.</param>
    /// <param name="context">[B, L, C_ctx] for cross-attention; null attends to <paramref name="hidden"/>.</param>
    /// <returns>The same shape as <paramref name="hidden"/>, with the residual and rescale applied when
    /// configured.</returns>
    public override Tensor forward(Tensor hidden, Tensor? context)
    {
        using var scope = NewDisposeScope();
        var residual = hidden;
        bool spatial = hidden.dim() == 4;
        long b = hidden.shape[0], c = hidden.shape[1], height = spatial ? hidden.shape[2] : 0, width = spatial ? hidden.shape[3] : 0;
        var x = spatial ? hidden.view(b, c, height * width).transpose(1, 2) : hidden;
        if (_groupNorm is not null) x = _groupNorm.call(x.transpose(1, 2)).transpose(1, 2);
        var kv = context ?? x;

        var q = SplitHeads(_toQ.call(x));
        var k = SplitHeads(_toK.call(kv));
        var v = SplitHeads(_toV.call(kv));
        var attended = nn.functional.scaled_dot_product_attention(q, k, v);
        var merged = attended.transpose(1, 2).reshape(b, -1, _o.Heads * _o.DimHead);
        var output = _toOut[0].call(merged);

        if (spatial) output = output.transpose(-1, -2).reshape(b, c, height, width);
        if (_o.ResidualConnection) output = output + residual;
        if (_o.RescaleOutputFactor != 1.0) output = output / _o.RescaleOutputFactor;
        return output.MoveToOuterDisposeScope();
    }

    private Tensor SplitHeads(Tensor t) => t.view(t.shape[0], t.shape[1], _o.Heads, _o.DimHead).transpose(1, 2);
}
