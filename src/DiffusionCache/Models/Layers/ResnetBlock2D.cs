using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using DiffusionCache.Runtime;

namespace DiffusionCache.Models.Layers;

/// <summary>
/// diffusers <c>ResnetBlock2D</c> (pre-norm, SiLU): out = (shortcut(x) + conv2(act(norm2(conv1(act(norm1(x))) + temb)))) / osf.
/// <see cref="PassThrough"/> exposes the residual path so that callers can split out = C + PassThrough(x)
/// (Block Caching eq. 4; the 1x1 <c>conv_shortcut</c> belongs to the pass-through).
/// </summary>
public sealed class ResnetBlock2D : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly GroupNorm _norm1;
    private readonly Conv2d _conv1;
    private readonly Linear? _timeEmbProj;
    private readonly GroupNorm _norm2;
    private readonly Conv2d _conv2;
    private readonly Conv2d? _convShortcut;
    private readonly double _outputScaleFactor;
    private readonly bool _scaleShift;

    /// <summary>Channels of the block's input.</summary>
    public int InChannels { get; }
    /// <summary>Channels of the block's output.</summary>
    public int OutChannels { get; }
    /// <summary>Whether the shortcut is a 1x1 <c>conv_shortcut</c> (input and output channels differ) rather than
    /// the identity.</summary>
    public bool HasConvShortcut => _convShortcut is not null;

    /// <summary>Builds the block with freshly initialised weights.</summary>
    /// <param name="inChannels">Input channels.</param>
    /// <param name="outChannels">Output channels; a <c>conv_shortcut</c> is added when they differ from the
    /// input's.</param>
    /// <param name="tembChannels">Width of the time embedding, projected by <c>time_emb_proj</c>; null for a block
    /// without one (the VAE's).</param>
    /// <param name="groups">GroupNorm groups of <c>norm1</c> and <c>norm2</c>.</param>
    /// <param name="eps">GroupNorm epsilon.</param>
    /// <param name="outputScaleFactor">diffusers' <c>output_scale_factor</c>: the sum is divided by it.</param>
    /// <param name="timeEmbeddingNorm"><c>default</c> (add the projected time embedding before <c>norm2</c>) or
    /// <c>scale_shift</c> (scale and shift after <c>norm2</c>, FiLM-style).</param>
    public ResnetBlock2D(int inChannels, int outChannels, int? tembChannels, int groups, double eps,
        double outputScaleFactor = 1.0, string timeEmbeddingNorm = "default") : base(nameof(ResnetBlock2D))
    {
        InChannels = inChannels;
        OutChannels = outChannels;
        _outputScaleFactor = outputScaleFactor;
        _scaleShift = timeEmbeddingNorm == "scale_shift";
        _norm1 = Norms.GroupNorm(groups, inChannels, eps);
        _conv1 = nn.Conv2d(inChannels, outChannels, 3, stride: 1, padding: 1);
        if (tembChannels is int t) _timeEmbProj = nn.Linear(t, _scaleShift ? 2 * outChannels : outChannels);
        _norm2 = Norms.GroupNorm(groups, outChannels, eps);
        _conv2 = nn.Conv2d(outChannels, outChannels, 3, stride: 1, padding: 1);
        if (inChannels != outChannels) _convShortcut = nn.Conv2d(inChannels, outChannels, 1L, stride: 1L, padding: 0L);

        register_module("norm1", _norm1);
        register_module("conv1", _conv1);
        if (_timeEmbProj is not null) register_module("time_emb_proj", _timeEmbProj);
        register_module("norm2", _norm2);
        register_module("conv2", _conv2);
        if (_convShortcut is not null) register_module("conv_shortcut", _convShortcut);
    }

    /// <summary>Children are registered explicitly under diffusers' names. TorchSharp's default would, once this
    /// module is registered in a parent, register every module field again under its C# field name, so that
    /// <c>state_dict()</c> listed each tensor twice.</summary>
    protected override void RegisterComponents() { }

    /// <summary>The block's forward pass (see the class summary).</summary>
    /// <param name="x">[B, InChannels, H, W].</param>
    /// <param name="temb">The time embedding [B, tembChannels]; not read by a block without
    /// <c>time_emb_proj</c>.</param>
    /// <returns>[B, OutChannels, H, W].</returns>
    public override Tensor forward(Tensor x, Tensor temb)
    {
        using var scope = NewDisposeScope();
        var h = ConvolutionKernels.Run(_conv1, nn.functional.silu(_norm1.call(x)));
        if (_timeEmbProj is not null)
        {
            var t = _timeEmbProj.call(nn.functional.silu(temb)).unsqueeze(-1).unsqueeze(-1);
            if (_scaleShift)
            {
                var parts = t.chunk(2, 1);
                h = _norm2.call(h) * (parts[0] + 1) + parts[1];
            }
            else
            {
                h = _norm2.call(h + t);
            }
        }
        else
        {
            h = _norm2.call(h);
        }
        h = ConvolutionKernels.Run(_conv2, nn.functional.silu(h));
        var shortcut = _convShortcut is null ? x : ConvolutionKernels.Run(_convShortcut, x);
        var output = shortcut + h;
        if (_outputScaleFactor != 1.0) output = output / _outputScaleFactor;
        return output.MoveToOuterDisposeScope();
    }

    /// <summary>The forward pass of a block built without a time embedding (<c>tembChannels</c> null), as in the
    /// VAE; the two-argument form reads its time embedding only when the block has <c>time_emb_proj</c>.</summary>
    public Tensor forward(Tensor x) => _timeEmbProj is null
        ? forward(x, null!)
        : throw new InvalidOperationException("this ResnetBlock2D has time_emb_proj and needs a time embedding");

    /// <summary>shortcut(x) / output_scale_factor: the part of the output that is not the block's change.</summary>
    public Tensor PassThrough(Tensor x)
    {
        if (_convShortcut is null) return _outputScaleFactor == 1.0 ? x.alias() : x / _outputScaleFactor;
        var s = ConvolutionKernels.Run(_convShortcut, x);
        if (_outputScaleFactor == 1.0) return s;
        using (s) return s / _outputScaleFactor;
    }
}
