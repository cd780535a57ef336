namespace DiffusionCache.Parity;

/// <summary>The outcome of one golden case: the worst absolute error over its expected values and whether every
/// value met the case's tolerance. <paramref name="Detail"/> names the first failing tensor or the error.</summary>
public sealed record ParityResult(string CaseId, double MaxAbsError, bool Passed, string? Detail = null);

/// <summary>Runs every case of one kind of golden folder (<c>unet</c>, <c>schedulers</c>, ...).</summary>
public interface IParitySuite
{
    string Kind { get; }
    IEnumerable<ParityResult> Run(GoldenFolder folder);
}
