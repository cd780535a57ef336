using DiffusionCache.Parity;

namespace DiffusionCache.ParityTests.Models;

/// <summary>shared/golden/sdxl: SDXL U-Net, both text encoders, SDXL prompt encoding, a whole SDXL pipeline call and
/// single-file checkpoints against diffusers/transformers, one test per case.</summary>
public sealed class SdxlParityTests
{
    public static IEnumerable<object[]> Cases() => ParityAssert.CaseIds("sdxl");

    [Theory]
    [MemberData(nameof(Cases))]
    public void MatchesReference(string caseId) => ParityAssert.Passes(new SdxlParity(), "sdxl", caseId);
}
