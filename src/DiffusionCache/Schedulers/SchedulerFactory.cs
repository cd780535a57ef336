using System.Text.Json;

namespace DiffusionCache.Schedulers;

/// <summary>Builds a scheduler from a diffusers scheduler config, dispatching on <c>_class_name</c>. Every value
/// that would change the arithmetic and is not implemented is refused with a <see cref="DiffusionCacheException"/>
/// naming the key and the value, before any work is done.</summary>
public static class SchedulerFactory
{
    /// <summary>The diffusers class names this port implements.</summary>
    public static IReadOnlyList<string> SupportedClasses => SchedulerConfig.SupportedClasses;

    /// <summary>Reads a <c>scheduler_config.json</c> (Python-written JSON: <c>-Infinity</c> is accepted).</summary>
    public static IScheduler FromConfigFile(string path, string? className = null)
    {
        var config = SchedulerConfig.FromFile(path, className);
        try
        {
            return Create(config);
        }
        catch (DiffusionCacheException e)
        {
            throw new DiffusionCacheException($"{path}: {e.Message}", e);
        }
    }

    /// <summary>Builds the scheduler of a config object (its <c>_class_name</c>, or <paramref name="className"/>
    /// as diffusers' <c>OtherScheduler.from_config(config)</c>).</summary>
    public static IScheduler FromJson(JsonElement config, string? className = null) =>
        Create(SchedulerConfig.FromJson(config, className));

    /// <summary>Builds the scheduler of <see cref="SchedulerConfig.ClassName"/> for <paramref name="config"/>; the
    /// caller owns (disposes) it.</summary>
    /// <exception cref="DiffusionCacheException">An unsupported class, or a value the class does not implement
    /// (named with its key).</exception>
    public static IScheduler Create(SchedulerConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        SchedulerConfig.RequireSupported(config.ClassName);
        return config.ClassName switch
        {
            SchedulerConfig.Ddpm => new DdpmScheduler(config),
            SchedulerConfig.Ddim => new DdimScheduler(config),
            SchedulerConfig.Pndm => new PndmScheduler(config),
            SchedulerConfig.DpmSolverMultistep => new DpmSolverMultistepScheduler(config),
            _ => new EulerDiscreteScheduler(config),
        };
    }
}
