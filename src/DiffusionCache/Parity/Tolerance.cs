using System.Text.Json;
using TorchSharp;

namespace DiffusionCache.Parity;

/// <summary>The golden pass rule: |actual - expected| &lt;= atol + rtol * |expected| elementwise, and no NaN or
/// infinity in the actual values.</summary>
/// <param name="Atol">The absolute tolerance.</param>
/// <param name="Rtol">The tolerance relative to |expected|.</param>
public readonly record struct Tolerance(double Atol, double Rtol)
{
    /// <summary>The case's <c>tolerance</c> object, <c>{"atol": ..., "rtol": ...}</c>; throws
    /// <see cref="KeyNotFoundException"/> when a field is missing.</summary>
    public static Tolerance FromCase(JsonElement @case)
    {
        var t = @case.GetProperty("tolerance");
        return new Tolerance(t.GetProperty("atol").GetDouble(), t.GetProperty("rtol").GetDouble());
    }

    /// <summary>Compares in float64. Returns the max absolute error (infinity when shapes differ or the actual
    /// value is not finite) and whether every element passes.</summary>
    public (double MaxAbsError, bool Passed) Compare(torch.Tensor actual, torch.Tensor expected)
    {
        using var scope = torch.NewDisposeScope();
        if (!actual.shape.SequenceEqual(expected.shape)) return (double.PositiveInfinity, false);
        var a = actual.detach().to(torch.ScalarType.Float64, torch.CPU);
        var e = expected.detach().to(torch.ScalarType.Float64, torch.CPU);
        if (!a.isfinite().all().item<bool>()) return (double.PositiveInfinity, false);
        if (a.numel() == 0) return (0, true);
        var diff = (a - e).abs();
        double max = diff.max().item<double>();
        bool passed = (diff <= Atol + Rtol * e.abs()).all().item<bool>();
        return (max, passed);
    }

    /// <summary>The rule for one value. Returns the absolute error (infinity when <paramref name="actual"/> is not
    /// finite) and whether it passes.</summary>
    public (double MaxAbsError, bool Passed) Compare(double actual, double expected)
    {
        if (!double.IsFinite(actual)) return (double.PositiveInfinity, false);
        double diff = Math.Abs(actual - expected);
        return (diff, diff <= Atol + Rtol * Math.Abs(expected));
    }
}
