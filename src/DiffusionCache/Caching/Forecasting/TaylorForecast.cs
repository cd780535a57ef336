using static TorchSharp.torch;

namespace DiffusionCache.Caching.Forecasting;

/// <summary>
/// Forecasting instead of reuse (TaylorSeer-style): the value a policy would reuse is extrapolated over the timestep
/// axis from the last computed ones. Order 0 returns the last computed value (plain reuse); order 1 and 2 add the
/// finite-difference Taylor terms, written in Newton's divided-difference form so that unevenly spaced timesteps
/// (computed steps are not contiguous) extrapolate correctly: with points (t₀,v₀),(t₁,v₁),(t₂,v₂), newest last,
/// v(t) ≈ v₂ + v[t₁,t₂](t − t₂) + v[t₀,t₁,t₂](t − t₂)(t − t₁). Holds order + 1 tensors; until that many values are
/// recorded it uses the highest order they allow. Memory: (order + 1) × one value.
/// </summary>
public sealed class TaylorForecast : IDisposable
{
    /// <summary>The largest order offered: beyond 2, extrapolating a few noisy steps amplifies the noise.</summary>
    public const int MaxOrder = 2;

    private readonly List<(double Timestep, Tensor Value)> _points = [];

    /// <param name="order">0 (reuse), 1 or 2.</param>
    public TaylorForecast(int order)
    {
        if (order is < 0 or > MaxOrder)
            throw new DiffusionCacheException($"forecasting order {order} is not supported: expected 0 (reuse), 1 or 2");
        Order = order;
    }

    /// <summary>0 (reuse), 1 or 2.</summary>
    public int Order { get; }

    /// <summary>True until a value is recorded (and after <see cref="Clear"/>).</summary>
    public bool IsEmpty => _points.Count == 0;

    /// <summary>Bytes of the values held.</summary>
    public long Bytes => _points.Sum(p => p.Value.numel() * p.Value.ElementSize);

    /// <summary>Records a computed value; the forecast keeps a detached copy it owns (the caller keeps its tensor).
    /// The oldest value beyond order + 1 is freed.</summary>
    /// <param name="timestep">The timestep the value was computed at.</param>
    /// <param name="value">The computed value.</param>
    public void Record(double timestep, Tensor value)
    {
        ArgumentNullException.ThrowIfNull(value);
        Keep(timestep, value.detach().clone());
    }

    /// <summary>Records a value the caller made for the forecast and hands over (a fresh tensor no one else holds,
    /// e.g. a difference just computed): no copy. It leaves the caller's dispose scope.</summary>
    /// <param name="timestep">The timestep the value was computed at.</param>
    /// <param name="owned">The value; the forecast disposes it.</param>
    public void Keep(double timestep, Tensor owned)
    {
        ArgumentNullException.ThrowIfNull(owned);
        owned.DetachFromDisposeScope();
        // A second record at the same timestep (PLMS's warm-up calls) replaces the first: no zero-width difference.
        if (_points.Count > 0 && _points[^1].Timestep == timestep) Drop(_points.Count - 1);
        _points.Add((timestep, owned));
        while (_points.Count > Order + 1) Drop(0);
    }

    /// <summary>The value at <paramref name="timestep"/>: the last recorded value (order 0 or one value recorded),
    /// else the Newton extrapolation; a new tensor in the caller's dispose scope.</summary>
    /// <param name="timestep">The timestep to forecast for.</param>
    public Tensor Predict(double timestep)
    {
        if (_points.Count == 0) throw new InvalidOperationException("nothing recorded to forecast from");
        var (t2, v2) = _points[^1];
        if (_points.Count == 1) return v2.alias();
        var (t1, v1) = _points[^2];
        using var scope = NewDisposeScope();
        var d12 = (v2 - v1) / (t2 - t1);
        var result = v2 + d12 * (timestep - t2);
        if (_points.Count == 3)
        {
            var (t0, v0) = _points[^3];
            var d01 = (v1 - v0) / (t1 - t0);
            result = result + (d12 - d01) / (t2 - t0) * ((timestep - t2) * (timestep - t1));
        }
        return result.MoveToOuterDisposeScope();
    }

    /// <summary>Replaces every held value by a detached alias of it (same values, no autograd graph): the end of an
    /// unroll window of scale-shift distillation, whose graph has been back-propagated and freed.</summary>
    internal void DetachValues()
    {
        for (int i = 0; i < _points.Count; i++)
        {
            var (t, v) = _points[i];
            _points[i] = (t, v.detach().DetachFromDisposeScope());
            v.Dispose();
        }
    }

    /// <summary>Frees every value (a new generation starts empty).</summary>
    public void Clear()
    {
        foreach (var (_, value) in _points) value.Dispose();
        _points.Clear();
    }

    private void Drop(int index)
    {
        _points[index].Value.Dispose();
        _points.RemoveAt(index);
    }

    /// <inheritdoc />
    public void Dispose() => Clear();
}
