namespace DiffusionCache;

/// <summary>Base of every error the library raises on purpose: bad files, bad configs, bad arguments.
/// The CLI prints <see cref="Exception.Message"/> as one line and exits non-zero.</summary>
public class DiffusionCacheException : Exception
{
    /// <summary>An error with a one-line, user-facing <paramref name="message"/>.</summary>
    /// <param name="message">What went wrong and, where it helps, what to do about it; shown to CLI users as
    /// is.</param>
    public DiffusionCacheException(string message) : base(message) { }

    /// <summary>An error with a user-facing <paramref name="message"/> that wraps the low-level cause.</summary>
    /// <param name="message">What went wrong, in the caller's terms; shown to CLI users as is.</param>
    /// <param name="inner">The underlying exception (I/O, JSON, TorchSharp), kept as
    /// <see cref="Exception.InnerException"/>.</param>
    public DiffusionCacheException(string message, Exception inner) : base(message, inner) { }
}
