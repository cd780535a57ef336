using System.Text.Json;
using DiffusionCache.Formats.Safetensors;
using TorchSharp;

namespace DiffusionCache.Parity;

/// <summary>A parity suite whose cases are independent: checks the folder's kind, then runs each case, turning a
/// structural problem into a failed result rather than an exception (see each suite's <c>RunCase</c>).</summary>
public abstract class CaseParitySuite : IParitySuite
{
    /// <inheritdoc />
    public abstract string Kind { get; }

    /// <summary>Runs every case of <paramref name="folder"/> at once, through <see cref="RunCase"/>, and returns the
    /// results in manifest order. Throws <see cref="DiffusionCacheException"/> when the folder is of another
    /// kind.</summary>
    public IEnumerable<ParityResult> Run(GoldenFolder folder)
    {
        ArgumentNullException.ThrowIfNull(folder);
        RequireKind(folder);
        return folder.Cases.Select(c => RunCase(folder, c)).ToList();
    }

    /// <summary>Runs one case of <paramref name="folder"/>, chosen by its type; a structural problem (missing field
    /// or tensor, unknown type, refused config) is a failed result with the reason as its detail.</summary>
    /// <param name="folder">The golden folder the case belongs to (its models and tensor files).</param>
    /// <param name="case">One element of the folder's <see cref="GoldenFolder.Cases"/>.</param>
    public abstract ParityResult RunCase(GoldenFolder folder, JsonElement @case);

    /// <summary>Throws <see cref="DiffusionCacheException"/> when <paramref name="folder"/>'s kind is not this suite's
    /// <see cref="Kind"/>.</summary>
    protected void RequireKind(GoldenFolder folder)
    {
        if (folder.Kind != Kind)
            throw new DiffusionCacheException($"{folder.Path}: golden folder of kind '{folder.Kind}', expected '{Kind}'");
    }

    /// <summary>
    /// The frame of a case checked against stored tensors: one dispose scope, the case's tolerance, its tensor file.
    /// After <paramref name="run"/> every stored tensor that is not an input must have been compared (listed in
    /// the covered set), so an expected output we forgot to check fails the case. A structural problem (missing
    /// field or tensor, refused config) becomes a failed result with the reason as its detail.
    /// </summary>
    protected static ParityResult RunTensorCase(GoldenFolder folder, JsonElement @case, Func<string, bool> isInput,
        Action<SafetensorsFile, CaseCheck, HashSet<string>> run)
    {
        ArgumentNullException.ThrowIfNull(folder);
        string id = CaseId(@case);
        try
        {
            using var scope = torch.NewDisposeScope();
            var check = new CaseCheck(id, Tolerance.FromCase(@case));
            using var file = folder.OpenTensors(@case);
            var covered = new HashSet<string>(StringComparer.Ordinal);
            run(file, check, covered);
            var unchecked_ = file.Entries.Select(e => e.Name).Where(n => !isInput(n) && !covered.Contains(n)).ToList();
            if (unchecked_.Count > 0)
                throw new CaseProblem($"expected tensors not checked: {string.Join(", ", unchecked_.Take(5))}" +
                    (unchecked_.Count > 5 ? $" (+{unchecked_.Count - 5} more)" : ""));
            return check.Result();
        }
        catch (Exception e) when (e is CaseProblem or DiffusionCacheException or KeyNotFoundException or InvalidOperationException)
        {
            return new ParityResult(id, double.PositiveInfinity, false, e.Message);
        }
    }

    /// <summary>A case that does not match its specification (a missing field, an unknown type).</summary>
    protected sealed class CaseProblem(string message) : Exception(message);

    /// <inheritdoc cref="GoldenFolder.CaseId"/>
    public static string CaseId(JsonElement @case) => GoldenFolder.CaseId(@case);

    /// <summary>The case's <c>type</c> field (e.g. <c>profile</c>, <c>cfg-sampling</c>); empty when it has
    /// none.</summary>
    public static string CaseType(JsonElement @case) =>
        @case.TryGetProperty("type", out var type) && type.ValueKind == JsonValueKind.String ? type.GetString()! : "";
}
