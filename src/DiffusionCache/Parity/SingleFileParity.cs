using System.Text.Json;

namespace DiffusionCache.Parity;

/// <summary>Placeholder until single-file checkpoints land (being written on another branch).</summary>
public static class SingleFileParity
{
    public static ParityResult RunKeys(GoldenFolder folder, JsonElement @case) => new(GoldenFolder.CaseId(@case), double.PositiveInfinity, false, "single-file checkpoints: not implemented yet");
    public static ParityResult RunUNet(GoldenFolder folder, JsonElement @case) => RunKeys(folder, @case);
}
