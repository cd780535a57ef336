using DiffusionCache.Parity;

namespace DiffusionCache.ParityTests.Models;

/// <summary>shared/golden/textvae: CLIP tokenizer ids, CLIP text encoder and VAE against transformers/diffusers,
/// one test per case; every case of the folder runs.</summary>
public sealed class TextVaeParityTests
{
    public static IEnumerable<object[]> Cases() => ParityAssert.CaseIds("textvae");

    [Theory]
    [MemberData(nameof(Cases))]
    public void MatchesReference(string caseId) => ParityAssert.Passes(new TextVaeParity(), "textvae", caseId);
}
