using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DiffusionCache.Models.Layers;

/// <summary>diffusers <c>GEGLU</c>: proj to 2x width, value * gelu(gate).</summary>
public sealed class GEGLU : nn.Module<Tensor, Tensor>
{
    /// <summary>Submodules are registered explicitly under diffusers' names; TorchSharp's reflective
    /// registration would add them again under C# field names.</summary>
    protected override void RegisterComponents() { }

    private readonly Linear _proj;

    /// <summary>Builds the layer with freshly initialised weights.</summary>
    /// <param name="dimIn">Input width.</param>
    /// <param name="dimOut">Output width; <c>proj</c> maps to twice this (value and gate).</param>
    public GEGLU(int dimIn, int dimOut) : base(nameof(GEGLU))
    {
        _proj = nn.Linear(dimIn, dimOut * 2);
        register_module("proj", _proj);
    }

    /// <summary>value * gelu(gate), where [value, gate] = proj(x) split in half along the last dimension.</summary>
    /// <param name="x">[..., dimIn].</param>
    /// <returns>[..., dimOut].</returns>
    public override Tensor forward(Tensor x)
    {
        using var projected = _proj.call(x);
        var parts = projected.chunk(2, -1);
        using var value = parts[0];
        using var gate = parts[1];
        using var activated = nn.functional.gelu(gate);
        return value * activated;
    }
}

/// <summary>diffusers <c>FeedForward</c> with GEGLU (its <c>net</c> is [GEGLU, Dropout, Linear]).</summary>
public sealed class FeedForward : nn.Module<Tensor, Tensor>
{
    /// <summary>Submodules are registered explicitly under diffusers' names; TorchSharp's reflective
    /// registration would add them again under C# field names.</summary>
    protected override void RegisterComponents() { }

    private readonly ModuleList<nn.Module<Tensor, Tensor>> _net;

    /// <summary>Builds the layer with freshly initialised weights.</summary>
    /// <param name="dim">Input and output width.</param>
    /// <param name="mult">Inner width as a multiple of <paramref name="dim"/>.</param>
    public FeedForward(int dim, int mult = 4) : base(nameof(FeedForward))
    {
        int inner = dim * mult;
        _net = nn.ModuleList<nn.Module<Tensor, Tensor>>(new GEGLU(dim, inner), nn.Dropout(0.0), nn.Linear(inner, dim));
        register_module("net", _net);
    }

    /// <summary>Linear(GEGLU(x)); the dropout is inactive at inference.</summary>
    /// <param name="x">[..., dim].</param>
    /// <returns>[..., dim].</returns>
    public override Tensor forward(Tensor x)
    {
        using var h = _net[0].call(x);
        return _net[2].call(h);
    }
}
