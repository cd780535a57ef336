using TorchSharp;

namespace DiffusionCache.Parity;

/// <summary>Accumulates the comparisons of one case into a <see cref="ParityResult"/>.</summary>
public sealed class CaseCheck(string caseId, Tolerance tolerance)
{
    private double _maxAbs;
    private string? _firstFailure;

    public Tolerance Tolerance => tolerance;

    public void Tensor(string name, torch.Tensor actual, torch.Tensor expected)
    {
        var (max, passed) = tolerance.Compare(actual, expected);
        Record(name, max, passed, actual.shape.SequenceEqual(expected.shape)
            ? null : $"shape [{string.Join(",", actual.shape)}] vs expected [{string.Join(",", expected.shape)}]");
    }

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

    public ParityResult Result() => new(caseId, _maxAbs, _firstFailure is null, _firstFailure);
}
