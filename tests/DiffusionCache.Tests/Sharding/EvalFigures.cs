using System.Text.Json;

namespace DiffusionCache.Tests.Sharding;

/// <summary>Compares two <c>eval.json</c> documents figure by figure: every number to 1e-9 and every string, array
/// length and property exactly, at any depth (both feature spaces, KID, intervals, floors, the verdict against the
/// first configuration), except <c>sampling_seconds</c>, a wall time.</summary>
internal static class EvalFigures
{
    public static void AssertSame(JsonElement expected, JsonElement actual, string path = "$")
    {
        Assert.True(expected.ValueKind == actual.ValueKind, $"{path}: {expected.ValueKind} vs {actual.ValueKind}");
        switch (expected.ValueKind)
        {
            case JsonValueKind.Object:
                var names = expected.EnumerateObject().Select(p => p.Name).ToList();
                Assert.Equal(names, actual.EnumerateObject().Select(p => p.Name).ToList());
                foreach (var name in names.Where(n => n != "sampling_seconds"))
                    AssertSame(expected.GetProperty(name), actual.GetProperty(name), $"{path}.{name}");
                break;
            case JsonValueKind.Array:
                Assert.True(expected.GetArrayLength() == actual.GetArrayLength(), $"{path}: {expected.GetArrayLength()} vs {actual.GetArrayLength()} items");
                for (int i = 0; i < expected.GetArrayLength(); i++) AssertSame(expected[i], actual[i], $"{path}[{i}]");
                break;
            case JsonValueKind.Number:
                double a = expected.GetDouble(), b = actual.GetDouble();
                Assert.True(Math.Abs(a - b) <= 1e-9, $"{path}: {a:R} vs {b:R}");
                break;
            default:
                Assert.True(expected.ToString() == actual.ToString(), $"{path}: '{expected}' vs '{actual}'");
                break;
        }
    }
}
