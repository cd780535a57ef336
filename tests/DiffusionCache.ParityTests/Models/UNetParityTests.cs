using DiffusionCache.Parity;

namespace DiffusionCache.ParityTests.Models;

/// <summary>Every case of shared/golden/unet: outputs and per-block intermediates match diffusers 0.27.2.</summary>
public class UNetParityTests
{
    public static IEnumerable<object[]> Cases => ParityAssert.CaseIds("unet");

    [Theory]
    [MemberData(nameof(Cases))]
    public void MatchesDiffusers(string caseId) => ParityAssert.Passes(new UNetParity(), "unet", caseId);
}
