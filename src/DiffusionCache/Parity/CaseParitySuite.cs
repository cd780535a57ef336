using System.Text.Json;

namespace DiffusionCache.Parity;

/// <summary>A parity suite whose cases are independent: checks the folder's kind, then runs each case, turning a
/// structural problem into a failed result rather than an exception (see each suite's <c>RunCase</c>).</summary>
public abstract class CaseParitySuite : IParitySuite
{
    public abstract string Kind { get; }

    public IEnumerable<ParityResult> Run(GoldenFolder folder)
    {
        ArgumentNullException.ThrowIfNull(folder);
        RequireKind(folder);
        return folder.Cases.Select(c => RunCase(folder, c)).ToList();
    }

    public abstract ParityResult RunCase(GoldenFolder folder, JsonElement @case);

    protected void RequireKind(GoldenFolder folder)
    {
        if (folder.Kind != Kind)
            throw new DiffusionCacheException($"{folder.Path}: golden folder of kind '{folder.Kind}', expected '{Kind}'");
    }

    public static string CaseId(JsonElement @case) => GoldenFolder.CaseId(@case);

    public static string CaseType(JsonElement @case) =>
        @case.TryGetProperty("type", out var type) && type.ValueKind == JsonValueKind.String ? type.GetString()! : "";
}
