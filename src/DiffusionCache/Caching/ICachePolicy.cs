using DiffusionCache.Models.Seam;
using DiffusionCache.Pipelines;

namespace DiffusionCache.Caching;

/// <summary>
/// A caching method. It reaches the model only as a seam hook (decide per block call: compute, or answer from the
/// cache) and learns where sampling stands as a step observer (step index and timestep; a new generation starts
/// with an empty cache and the cache is freed when it ends). Adding a method means adding a policy class; no model
/// file changes.
/// </summary>
public interface ICachePolicy : IBlockHook, IStepObserver, IDisposable
{
    /// <summary>Short description for tables, e.g. "DeepCache N=3 branch 0" or "BlockCache δ=0.1".</summary>
    string Name { get; }

    /// <summary>Per-block counts of computed and reused evaluations and the cache's memory, accumulated over
    /// the generations since the policy was created.</summary>
    CacheStatistics Statistics { get; }
}
