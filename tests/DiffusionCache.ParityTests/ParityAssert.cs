using DiffusionCache.Parity;
using DiffusionCache.Tests.TestSupport;

namespace DiffusionCache.ParityTests;

/// <summary>Runs one golden case through the library's parity suite and fails with its detail.</summary>
public static class ParityAssert
{
    public static IEnumerable<object[]> CaseIds(string kind, Func<System.Text.Json.JsonElement, bool>? include = null)
    {
        using var folder = GoldenFolder.Open(Golden.Path(kind));
        return folder.Cases.Where(c => include?.Invoke(c) ?? true).Select(c => new object[] { GoldenFolder.CaseId(c) }).ToArray();
    }

    public static void Passes(IParitySuite suite, string kind, string caseId)
    {
        using var folder = GoldenFolder.Open(Golden.Path(kind));
        using var one = folder.Where(id => id == caseId);
        var results = suite.Run(one).ToList();
        var result = Assert.Single(results);
        Assert.True(result.Passed, $"{caseId}: max abs error {result.MaxAbsError:G3}; {result.Detail}");
    }
}
