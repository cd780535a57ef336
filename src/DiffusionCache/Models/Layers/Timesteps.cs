using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Models.Layers;

/// <summary>diffusers <c>Timesteps</c>: the sinusoidal timestep embedding, always computed in float32
/// (freq[i] = exp(-ln(10000) * i / (half - freq_shift)); [sin, cos], or [cos, sin] when flipped).</summary>
public sealed class Timesteps : nn.Module<Tensor, Tensor>
{
    /// <summary>Submodules are registered explicitly under diffusers' names; TorchSharp's reflective
    /// registration would add them again under C# field names.</summary>
    protected override void RegisterComponents() { }

    private readonly int _dim;
    private readonly bool _flipSinToCos;
    private readonly double _freqShift;

    /// <summary>Creates the (parameter-free) embedding.</summary>
    /// <param name="dim">Embedding width; an odd width is zero-padded by one.</param>
    /// <param name="flipSinToCos">[cos, sin] instead of [sin, cos] (diffusers' <c>flip_sin_to_cos</c>).</param>
    /// <param name="freqShift">diffusers' <c>downscale_freq_shift</c> (<c>freq_shift</c> in U-Net configs).</param>
    public Timesteps(int dim, bool flipSinToCos, double freqShift) : base("time_proj")
    {
        _dim = dim;
        _flipSinToCos = flipSinToCos;
        _freqShift = freqShift;
    }

    /// <summary>Embeds each timestep.</summary>
    /// <param name="timesteps">[B], any numeric type; fractional values are kept.</param>
    /// <returns>[B, dim], float32.</returns>
    public override Tensor forward(Tensor timesteps)
    {
        using var scope = NewDisposeScope();
        int half = _dim / 2;
        // Same operation order as diffusers so float32 rounding matches: (-ln(1e4) * i) / (half - shift).
        var exponent = arange(0, half, dtype: ScalarType.Float32, device: timesteps.device) * (float)-Math.Log(10000.0);
        exponent = exponent / (float)(half - _freqShift);
        var freqs = exponent.exp();
        var args = timesteps.to(ScalarType.Float32).unsqueeze(1) * freqs.unsqueeze(0);
        var emb = _flipSinToCos ? cat([args.cos(), args.sin()], 1) : cat([args.sin(), args.cos()], 1);
        if (_dim % 2 == 1) emb = nn.functional.pad(emb, [0, 1]);
        return emb.MoveToOuterDisposeScope();
    }
}
