namespace DiffusionCache;

/// <summary>Base of every error the library raises on purpose: bad files, bad configs, bad arguments.
/// The CLI prints <see cref="Exception.Message"/> as one line and exits non-zero.</summary>
public class DiffusionCacheException : Exception
{
    public DiffusionCacheException(string message) : base(message) { }
    public DiffusionCacheException(string message, Exception inner) : base(message, inner) { }
}
