using DiffusionCache.Formats.Json;

namespace DiffusionCache.Tests.Formats;

public sealed class PythonJsonTests
{
    [Fact]
    public void BareNonFiniteTokensBecomeReadableNumbers()
    {
        using var doc = PythonJson.Parse("""{"a": -Infinity, "b": [Infinity, NaN, 1.5], "c": "NaN -Infinity \" Infinity"}""");
        var root = doc.RootElement;
        Assert.True(PythonJson.TryGetDouble(root.GetProperty("a"), out double a));
        Assert.Equal(double.NegativeInfinity, a);
        var b = root.GetProperty("b").EnumerateArray().Select(e => PythonJson.TryGetDouble(e, out double v) ? v : 0).ToArray();
        Assert.Equal(double.PositiveInfinity, b[0]);
        Assert.True(double.IsNaN(b[1]));
        Assert.Equal(1.5, b[2]);
        Assert.Equal("NaN -Infinity \" Infinity", root.GetProperty("c").GetString());
        Assert.False(PythonJson.TryGetDouble(root.GetProperty("c"), out _));
    }
}
