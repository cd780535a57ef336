namespace DiffusionCache.Pipelines;

/// <summary>Components loaded so far while assembling a pipeline: disposed together if assembly fails before
/// <see cref="Keep"/>, so a refused folder leaks no model.</summary>
internal sealed class ComponentLoad : IDisposable
{
    private readonly List<IDisposable> _loaded = [];
    private bool _kept;

    public T Add<T>(T component) where T : IDisposable
    {
        _loaded.Add(component);
        return component;
    }

    /// <summary>The pipeline owns the components now.</summary>
    public void Keep() => _kept = true;

    public void Dispose()
    {
        if (!_kept) _loaded.ForEach(c => c.Dispose());
    }
}
