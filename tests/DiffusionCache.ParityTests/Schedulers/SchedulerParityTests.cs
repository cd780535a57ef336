using DiffusionCache.Parity;
using TorchSharp;
using Xunit.Abstractions;

namespace DiffusionCache.ParityTests.Schedulers;

public sealed class SchedulerParityTests(ITestOutputHelper output)
{
    public static TheoryData<string> SchedulerOnlyCases =>
        SchedulerGolden.CaseIds(SchedulerParity.TimestepsCase, SchedulerParity.TrajectoryCase);

    [Theory]
    [MemberData(nameof(SchedulerOnlyCases))]
    public void CaseMatchesDiffusers(string id)
    {
        var result = new SchedulerParity().RunCase(SchedulerGolden.Folder, SchedulerGolden.Case(id));
        output.WriteLine($"{id}: max abs error {result.MaxAbsError:G3}");
        Assert.True(result.Passed, $"{id}: {result.Detail} (max abs error {result.MaxAbsError:G3})");
    }

    public static TheoryData<string> CfgSamplingCases => SchedulerGolden.CaseIds(SchedulerParity.CfgSamplingCase);

    /// <summary>Classifier-free guidance with the tiny U-Net, through our one sampling loop.</summary>
    [Theory]
    [MemberData(nameof(CfgSamplingCases))]
    public void CfgSamplingMatchesDiffusers(string id)
    {
        var result = new SchedulerParity().RunCase(SchedulerGolden.Folder, SchedulerGolden.Case(id));
        output.WriteLine($"{id}: max abs error {result.MaxAbsError:G3}");
        Assert.True(result.Passed, $"{id}: {result.Detail} (max abs error {result.MaxAbsError:G3})");
    }
}
