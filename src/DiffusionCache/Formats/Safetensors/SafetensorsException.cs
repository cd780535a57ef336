namespace DiffusionCache.Formats.Safetensors;

/// <summary>A safetensors file that is malformed or does not hold what was asked for. Names the file and,
/// where one is involved, the tensor.</summary>
public sealed class SafetensorsException : DiffusionCacheException
{
    public string FilePath { get; }
    public string? TensorName { get; }

    public SafetensorsException(string filePath, string? tensorName, string problem)
        : base(Describe(filePath, tensorName, problem))
    {
        FilePath = filePath;
        TensorName = tensorName;
    }

    public SafetensorsException(string filePath, string? tensorName, string problem, Exception inner)
        : base(Describe(filePath, tensorName, problem), inner)
    {
        FilePath = filePath;
        TensorName = tensorName;
    }

    private static string Describe(string filePath, string? tensorName, string problem) =>
        tensorName is null ? $"{filePath}: {problem}" : $"{filePath}: tensor '{Shorten(tensorName)}': {problem}";

    // A name from a hostile header can be megabytes long; the message needs only enough to recognise it.
    private static string Shorten(string name) => name.Length <= 200 ? name : name[..200] + "...";
}
