namespace DiffusionCache.Formats.Safetensors;

/// <summary>A safetensors file that is malformed or does not hold what was asked for. Names the file and,
/// where one is involved, the tensor.</summary>
public sealed class SafetensorsException : DiffusionCacheException
{
    /// <summary>The file being read or written.</summary>
    public string FilePath { get; }

    /// <summary>The tensor at fault; null when the problem is with the file as a whole (header, length, I/O).</summary>
    public string? TensorName { get; }

    /// <summary>A problem with <paramref name="filePath"/>, and with one tensor when <paramref name="tensorName"/> is
    /// given; the message names both (a very long tensor name is shortened).</summary>
    /// <param name="filePath">The file being read or written.</param>
    /// <param name="tensorName">The tensor at fault, or null.</param>
    /// <param name="problem">What is wrong, for the message.</param>
    public SafetensorsException(string filePath, string? tensorName, string problem)
        : base(Describe(filePath, tensorName, problem))
    {
        FilePath = filePath;
        TensorName = tensorName;
    }

    /// <inheritdoc cref="SafetensorsException(string, string?, string)"/>
    /// <param name="filePath">The file being read or written.</param>
    /// <param name="tensorName">The tensor at fault, or null.</param>
    /// <param name="problem">What is wrong, for the message.</param>
    /// <param name="inner">The underlying error (I/O, JSON, encoding).</param>
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
