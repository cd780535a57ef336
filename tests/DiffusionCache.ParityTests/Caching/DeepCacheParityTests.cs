using System.Text.Json;
using DiffusionCache.Parity;
using DiffusionCache.Tests.TestSupport;
using Xunit.Abstractions;

namespace DiffusionCache.ParityTests.Caching;

/// <summary>The cases of shared/golden/deepcache against DeepCache 1691a3a (one test per case), and the manifest's
/// branch_semantics table against what our policy reuses.</summary>
public sealed class DeepCacheParityTests(ITestOutputHelper output)
{
    private static readonly Lazy<GoldenFolder> Shared = new(() => GoldenFolder.Open(Golden.Path("deepcache")));

    private static GoldenFolder Folder => Shared.Value;

    private static TheoryData<string> Ids(string type) =>
        new(Folder.Cases.Where(c => DeepCacheParity.CaseType(c) == type).Select(GoldenFolder.CaseId));

    public static TheoryData<string> StepsCases => Ids(DeepCacheParity.StepsCase);
    public static TheoryData<string> UniformSamplingCases => Ids(DeepCacheParity.UniformSamplingCase);
    public static TheoryData<string> NonUniformSamplingCases => Ids(DeepCacheParity.NonUniformSamplingCase);

    [Theory]
    [MemberData(nameof(StepsCases))]
    public void StepSelectionMatchesDeepCache(string id) => Passes(id);

    [Theory]
    [MemberData(nameof(UniformSamplingCases))]
    public void UniformSamplingMatchesDeepCache(string id) => Passes(id);

    [Theory]
    [MemberData(nameof(NonUniformSamplingCases))]
    public void NonUniformSamplingMatchesDeepCache(string id) => Passes(id);

    [Fact]
    public void EveryCaseHasATest()
    {
        int covered = StepsCases.Count + UniformSamplingCases.Count + NonUniformSamplingCases.Count;
        Assert.Equal(Folder.Cases.Count, covered);
        Assert.Equal(88, covered);
    }

    [Fact]
    public void BranchSemanticsTableMatchesThePolicy()
    {
        var results = new DeepCacheParity().CheckBranchSemantics(Folder);
        int branches = Folder.Manifest.GetProperty("branch_semantics").EnumerateObject().Count();
        Assert.Equal(branches + 1, results.Count);
        foreach (var r in results) output.WriteLine($"{r.CaseId}: {(r.Passed ? "ok" : r.Detail)}");
        Assert.All(results, r => Assert.True(r.Passed, $"{r.CaseId}: {r.Detail}"));
    }

    [Fact]
    public void SuiteIsRegisteredForTheFolderKind() =>
        Assert.IsType<DeepCacheParity>(ParitySuites.For(Folder.Kind));

    private void Passes(string id)
    {
        JsonElement @case = Folder.Cases.Single(c => GoldenFolder.CaseId(c) == id);
        var result = new DeepCacheParity().RunCase(Folder, @case);
        output.WriteLine($"{id}: max abs error {result.MaxAbsError:G3}");
        Assert.True(result.Passed, $"{id}: {result.Detail} (max abs error {result.MaxAbsError:G3})");
    }
}
