using System.Text.Json;
using DiffusionCache.Parity;
using Xunit.Abstractions;

namespace DiffusionCache.ParityTests.Autoencoders;

/// <summary>The VAE cases of shared/golden/textvae against diffusers 0.27.2's AutoencoderKL.</summary>
public sealed class VaeParityTests(ITestOutputHelper output)
{
    /// <summary>The golden folder sits beside the repository: walk up from the test assembly to the folder holding
    /// DiffusionCache.sln, then ../shared/golden/textvae.</summary>
    private static string FolderPath()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "DiffusionCache.sln")))
                return Path.GetFullPath(Path.Combine(dir.FullName, "..", "shared", "golden", "textvae"));
        }
        throw new DirectoryNotFoundException($"no DiffusionCache.sln above {AppContext.BaseDirectory}");
    }

    public static TheoryData<string> VaeCases()
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(FolderPath(), "manifest.json")));
        var data = new TheoryData<string>();
        foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
            if (VaeParity.IsVaeCase(c)) data.Add(c.GetProperty("id").GetString()!);
        return data;
    }

    [Theory]
    [MemberData(nameof(VaeCases))]
    public void VaeCaseMatchesReference(string caseId)
    {
        using var folder = GoldenFolder.Open(FolderPath());
        var result = new VaeParity().RunCase(folder, caseId);
        var tolerance = Tolerance.FromCase(folder.Cases.First(c => c.GetProperty("id").GetString() == caseId));
        output.WriteLine($"{caseId}: max abs error {result.MaxAbsError:G3} (atol {tolerance.Atol:G3})");
        Assert.True(result.Passed, $"{caseId}: max abs error {result.MaxAbsError:G3}; {result.Detail}");
    }

    /// <summary>The suite must report only what it ran: VAE cases as results, every other case as not run.</summary>
    [Fact]
    public void SuiteReportsOnlyVaeCasesAndCountsTheRest()
    {
        using var folder = GoldenFolder.Open(FolderPath());
        var suite = new VaeParity();
        var results = suite.Run(folder).ToList();

        var vaeIds = folder.Cases.Where(VaeParity.IsVaeCase).Select(c => c.GetProperty("id").GetString()!).ToList();
        Assert.NotEmpty(vaeIds);
        Assert.Equal(vaeIds, results.Select(r => r.CaseId));
        Assert.All(results, r => Assert.True(r.Passed, $"{r.CaseId}: {r.Detail}"));
        Assert.Equal(folder.Cases.Count - vaeIds.Count, suite.NotRunCount);
        Assert.True(suite.NotRunCount > 0, "the textvae folder also holds tokenizer and text-encoder cases");
        Assert.DoesNotContain(suite.NotRun, vaeIds.Contains);
    }
}
