using DiffusionCache.Cli;
using DiffusionCache.Cli.Commands;
using DiffusionCache.Pipelines;
using DiffusionCache.Tests.TestSupport;

namespace DiffusionCache.Tests.Cli.Commands;

/// <summary><c>diffcache frontier</c>: every point of both sweeps resolves on the embedded model (so the published
/// run cannot fail hours in on a typo), each method's line is anchored at its uncached reference, and bad values
/// fail before any work.</summary>
public sealed class FrontierCommandTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Every_point_of_the_sweep_resolves_on_the_embedded_model(bool full)
    {
        using var pipeline = ClassConditionalPipeline.Load(Repository.Path("models", "fashion-ldm"));
        var all = FrontierCommand.Groups(full).SelectMany(g => g.Points).ToList();
        Assert.Equal(all.Count, all.Select(p => p.Name).Distinct().Count());   // one study holds both sweeps
        foreach (var group in FrontierCommand.Groups(full))
        {
            Assert.Equal(group.Points.Count, group.Points.Select(p => p.Name).Distinct().Count());
            var reference = Assert.Single(group.Points, p => p.Reference is null);
            Assert.Equal(("none", group.Steps), (reference.Cache, reference.Steps));
            Assert.All(group.Points.Where(p => p.Reference is not null), p => Assert.Equal(reference.Name, p.Reference));
            Assert.All(group.Points, p => Assert.Contains(p.Method, FrontierCommand.Methods));
            foreach (var p in group.Points)
            {
                using var choice = CacheChoice.Resolve(p.Cache, pipeline, p.Solver, p.Steps);
                Assert.Equal(p.Cache == "none", choice.Create is null);
            }
        }
    }

    [Theory]
    [InlineData("--samples", "1")]
    [InlineData("--batch", "0")]
    [InlineData("--repeats", "0")]
    [InlineData("--timing-batch", "0")]
    [InlineData("--second-classifier", "no/such/folder")]
    [InlineData("--sweep", "ddim50")]   // the quick sweep is DDIM 20 only
    [InlineData("--shard", "0/2")]   // sharding is for --sample-only: timings run in one process
    public void Refuses_bad_values_before_any_work(string option, string value)
    {
        using var dir = new TempFolder();
        Assert.NotEqual(0, CliApp.Run("frontier", option, value, "--out", dir.Path, "--store", dir.File("store")));
        Assert.False(Directory.Exists(dir.File("store")));
        Assert.Empty(Directory.GetFiles(dir.Path));
    }
}
