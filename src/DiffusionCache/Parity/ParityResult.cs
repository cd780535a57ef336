namespace DiffusionCache.Parity;

/// <summary>The outcome of one golden case: the worst absolute error over its expected values and whether every
/// value met the case's tolerance. <paramref name="Detail"/> names the first failing tensor or the error.</summary>
/// <param name="CaseId">The case's <c>id</c> in the manifest.</param>
/// <param name="MaxAbsError">The largest absolute error over every compared value; infinity when a shape differed, a
/// value was not finite or the case could not run; 0 for exact-only checks.</param>
/// <param name="Passed">Whether every comparison, exact ones included, met the case's rule.</param>
/// <param name="Detail">Null when passed; otherwise the first failing comparison or the reason the case could not
/// run.</param>
public sealed record ParityResult(string CaseId, double MaxAbsError, bool Passed, string? Detail = null);

/// <summary>Runs every case of one kind of golden folder (<c>unet</c>, <c>schedulers</c>, ...).</summary>
public interface IParitySuite
{
    /// <summary>The golden kind this suite runs: the manifest's <c>kind</c> (see
    /// <see cref="ParitySuites.Kinds"/>).</summary>
    string Kind { get; }

    /// <summary>Runs every case of <paramref name="folder"/> and returns one result per case, in manifest order. A case
    /// that fails or cannot run (missing field or tensor, refused config) is a failed result, not an
    /// exception.</summary>
    IEnumerable<ParityResult> Run(GoldenFolder folder);
}
