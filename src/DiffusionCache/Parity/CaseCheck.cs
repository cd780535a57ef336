using TorchSharp;

namespace DiffusionCache.Parity;

/// <summary>Accumulates the comparisons of one case into a <see cref="ParityResult"/>.</summary>
/// <param name="caseId">The case's id, for the result.</param>
/// <param name="tolerance">The case's tolerance, used by every comparison that does not bring its own.</param>
public sealed class CaseCheck(string caseId, Tolerance tolerance)
{
    private double _maxAbs;
    private string? _firstFailure;

    /// <summary>The case's tolerance, which <see cref="Tensor"/> and <see cref="Scalar(string, double, double)"/>
    /// apply.</summary>
    public Tolerance Tolerance => tolerance;

    /// <summary>Compares a tensor with its expected value under <see cref="Tolerance"/> (in float64, on the CPU;
    /// either may be of any type or device). A different shape or a non-finite actual value fails with an infinite
    /// error.</summary>
    /// <param name="name">The tensor's name in the case, for the failure detail.</param>
    /// <param name="actual">What we computed.</param>
    /// <param name="expected">The golden value.</param>
    public void Tensor(string name, torch.Tensor actual, torch.Tensor expected)
    {
        var (max, passed) = tolerance.Compare(actual, expected);
        Record(name, max, passed, actual.shape.SequenceEqual(expected.shape)
            ? null : $"shape [{string.Join(",", actual.shape)}] vs expected [{string.Join(",", expected.shape)}]");
    }

    /// <summary>Compares a scalar with its expected value under <see cref="Tolerance"/>.</summary>
    /// <param name="name">The value's name in the case, for the failure detail.</param>
    /// <param name="actual">What we computed.</param>
    /// <param name="expected">The golden value.</param>
    public void Scalar(string name, double actual, double expected) => Scalar(name, actual, expected, tolerance);

    /// <summary>A scalar with its own tolerance (e.g. a derived fraction whose tolerance is not the case's).</summary>
    public void Scalar(string name, double actual, double expected, Tolerance own)
    {
        var (max, passed) = own.Compare(actual, expected);
        Record(name, max, passed, null);
    }

    /// <summary>Integer lists (timesteps, step indices) must match exactly.</summary>
    public void Exact<T>(string name, IReadOnlyList<T> actual, IReadOnlyList<T> expected)
    {
        bool equal = actual.SequenceEqual(expected);
        if (!equal && _firstFailure is null)
            _firstFailure = $"{name}: [{string.Join(",", actual)}] vs expected [{string.Join(",", expected)}]";
    }

    private void Record(string name, double max, bool passed, string? why)
    {
        _maxAbs = Math.Max(_maxAbs, max);
        if (!passed && _firstFailure is null) _firstFailure = why is null ? $"{name}: max abs error {max:G3}" : $"{name}: {why}";
    }

    /// <summary>The case's result so far: the largest absolute error of all comparisons, passed when none failed,
    /// and the first failure as the detail.</summary>
    public ParityResult Result() => new(caseId, _maxAbs, _firstFailure is null, _firstFailure);
}
