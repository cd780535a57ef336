using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DiffusionCache.Models.Layers;

/// <summary>diffusers <c>TimestepEmbedding</c>: linear_1, SiLU, linear_2.</summary>
public sealed class TimestepEmbedding : nn.Module<Tensor, Tensor>
{
    /// <summary>Submodules are registered explicitly under diffusers' names; TorchSharp's reflective
    /// registration would add them again under C# field names.</summary>
    protected override void RegisterComponents() { }

    private readonly Linear _linear1;
    private readonly Linear _linear2;

    /// <summary>Builds the layer with freshly initialised weights.</summary>
    /// <param name="inChannels">Width of the sinusoidal embedding it takes (<see cref="Timesteps"/>'s dim).</param>
    /// <param name="embedDim">Width of the time embedding it produces.</param>
    public TimestepEmbedding(int inChannels, int embedDim) : base("time_embedding")
    {
        _linear1 = nn.Linear(inChannels, embedDim);
        _linear2 = nn.Linear(embedDim, embedDim);
        register_module("linear_1", _linear1);
        register_module("linear_2", _linear2);
    }

    /// <summary>linear_2(silu(linear_1(x))).</summary>
    /// <param name="x">[B, inChannels].</param>
    /// <returns>[B, embedDim].</returns>
    public override Tensor forward(Tensor x)
    {
        using var h = _linear1.call(x);
        using var a = nn.functional.silu(h);
        return _linear2.call(a);
    }
}
