using DiffusionCache.Parity;
using DiffusionCache.Tests.TestSupport;
using Xunit.Abstractions;

namespace DiffusionCache.ParityTests.Caching;

/// <summary>Every case of shared/golden/blockcache (its README is the specification): profiles (eq. 6), schedules
/// (eq. 7, exact) and cached sampling in residual and output mode, one test per case.</summary>
public sealed class BlockCacheParityTests(ITestOutputHelper output)
{
    private static readonly Lazy<GoldenFolder> Folder = new(() => GoldenFolder.Open(Golden.Path("blockcache")));

    public static TheoryData<string> Cases(string type) =>
        new(Folder.Value.Cases.Where(c => SchedulerParity.CaseType(c) == type).Select(GoldenFolder.CaseId));

    public static TheoryData<string> ProfileCases => Cases(BlockCacheParity.ProfileCase);
    public static TheoryData<string> ScheduleCases => Cases(BlockCacheParity.ScheduleCase);
    public static TheoryData<string> CachedSamplingCases => Cases(BlockCacheParity.CachedSamplingCase);

    [Theory]
    [MemberData(nameof(ProfileCases))]
    public void ProfileMatchesReference(string id) => Passes(id);

    [Theory]
    [MemberData(nameof(ScheduleCases))]
    public void ScheduleMatchesReference(string id) => Passes(id);

    [Theory]
    [MemberData(nameof(CachedSamplingCases))]
    public void CachedSamplingMatchesReference(string id) => Passes(id);

    [Fact]
    public void SuiteIsRegisteredForTheKind() =>
        Assert.IsType<BlockCacheParity>(ParitySuites.For(Folder.Value.Kind));

    private void Passes(string id)
    {
        var @case = Folder.Value.Cases.Single(c => GoldenFolder.CaseId(c) == id);
        var result = new BlockCacheParity().RunCase(Folder.Value, @case);
        output.WriteLine($"{id}: max abs error {result.MaxAbsError:G3}");
        Assert.True(result.Passed, $"{id}: {result.Detail} (max abs error {result.MaxAbsError:G3})");
    }
}
