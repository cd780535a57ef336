using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Training;

/// <summary>
/// An exponential moving average of a model's parameters (the weights diffusion models are sampled with).
/// The decay warms up as min(decay, (1 + n) / (10 + n)) so early averages are not dominated by the random init.
/// </summary>
public sealed class ExponentialMovingAverage : IDisposable
{
    private readonly List<(string Name, Tensor Live, Tensor Shadow)> _pairs = [];
    private readonly double _decay;

    /// <summary>How many times <see cref="Update"/> has run (restored by <see cref="Load"/>): the n of the
    /// warm-up.</summary>
    public long Updates { get; private set; }

    /// <summary>Starts the average at a copy of <paramref name="model"/>'s current parameters. The average keeps
    /// references to the live parameters, so the model must outlive it. Throws
    /// <see cref="ArgumentOutOfRangeException"/> when <paramref name="decay"/> is not in (0, 1).</summary>
    /// <param name="model">The model whose parameters are averaged.</param>
    /// <param name="decay">The largest decay, reached after warm-up (e.g. 0.999).</param>
    public ExponentialMovingAverage(nn.Module model, double decay)
    {
        if (decay is <= 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(decay), "decay must be in (0, 1)");
        _decay = decay;
        using var noGrad = no_grad();
        foreach (var (name, p) in model.named_parameters())
            _pairs.Add((name, p, p.detach().clone().DetachFromDisposeScope()));
    }

    /// <summary>The decay the next <see cref="Update"/> uses: min(decay, (1 + n) / (10 + n)), n =
    /// <see cref="Updates"/>.</summary>
    public double CurrentDecay => Math.Min(_decay, (1.0 + Updates) / (10.0 + Updates));

    /// <summary>Moves the average towards the live parameters: <c>avg = d * avg + (1 - d) * live</c> with
    /// d = <see cref="CurrentDecay"/>, without gradients; call after each optimizer step.</summary>
    public void Update()
    {
        double d = CurrentDecay;
        using var noGrad = no_grad();
        foreach (var (_, live, shadow) in _pairs) shadow.mul_(d).add_(live, alpha: 1 - d);
        Updates++;
    }

    /// <summary>The averaged weights by parameter name (the tensors stay owned by this object).</summary>
    public IEnumerable<KeyValuePair<string, Tensor>> Weights => _pairs.Select(p => KeyValuePair.Create(p.Name, p.Shadow));

    /// <summary>Restores the average from saved weights (resume).</summary>
    public void Load(IReadOnlyDictionary<string, Tensor> weights, long updates)
    {
        using var noGrad = no_grad();
        foreach (var (name, _, shadow) in _pairs)
        {
            if (!weights.TryGetValue(name, out var w)) throw new DiffusionCacheException($"EMA checkpoint lacks '{name}'");
            shadow.copy_(w);
        }
        Updates = updates;
    }

    /// <summary>Copies the averaged weights into a model with the same parameter names.</summary>
    public void CopyTo(nn.Module model)
    {
        var byName = _pairs.ToDictionary(p => p.Name, p => p.Shadow);
        using var noGrad = no_grad();
        foreach (var (name, p) in model.named_parameters()) p.copy_(byName[name]);
    }

    /// <summary>Frees the averaged copies; the model's own parameters are untouched.</summary>
    public void Dispose()
    {
        foreach (var (_, _, shadow) in _pairs) shadow.Dispose();
        _pairs.Clear();
    }
}
