using DiffusionCache.Caching;
using DiffusionCache.Caching.BlockCaching;
using DiffusionCache.Models.Seam;
using DiffusionCache.Pipelines;
using TorchSharp;
using static DiffusionCache.Tests.Caching.BlockCaching.BlockCacheFixtures;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Caching.BlockCaching;

public class ChangeProfilerTests
{
    [Fact]
    public void TargetsAreTheModelsTransformersOrResnetsInExecutionOrder()
    {
        using var unet = Model();
        var transformers = BlockCachingTargets.Transformers.Paths(unet);
        Assert.Equal(11, transformers.Count);
        Assert.Equal("down_blocks.0.attentions.0", transformers[0]);
        Assert.Equal("mid_block.attentions.0", transformers[4]);
        var resnets = BlockCachingTargets.Resnets.Paths(unet);
        Assert.Equal(17, resnets.Count);
        Assert.All(resnets, p => Assert.Contains(".resnets.", p));
        Assert.Equal(BlockCachingTargets.Resnets, BlockCachingTargets.Parse("resnet2d"));
        Assert.Throws<DiffusionCacheException>(() => BlockCachingTargets.Parse("attn"));
    }

    [Fact]
    public void BothKindsTogetherAreEveryTransformerAndResnetInterleavedInExecutionOrder()
    {
        using var unet = Model();
        var both = BlockCachingTargets.TransformersAndResnets.Paths(unet);
        Assert.Equal(11 + 17, both.Count);
        // Execution order of the seam, not transformers then resnets: a down block's resnet precedes its attention.
        Assert.Equal([.. unet.Seam.Sites.Where(s => s.Kind is BlockKind.Transformer or BlockKind.Resnet).Select(s => s.Path)], both);
        Assert.True(both.ToList().IndexOf("down_blocks.0.resnets.0") < both.ToList().IndexOf("down_blocks.0.attentions.0"));
        Assert.Same(BlockCachingTargets.TransformersAndResnets, BlockCachingTargets.Parse("transformer2d,resnet2d"));
        Assert.Same(BlockCachingTargets.TransformersAndResnets, BlockCachingTargets.Parse("resnet2d,transformer2d"));
        Assert.Equal("transformer2d,resnet2d", BlockCachingTargets.Parse("resnet2d,transformer2d").Name);
        Assert.Throws<DiffusionCacheException>(() => BlockCachingTargets.Parse("resnet2d,resnet2d"));
        Assert.Throws<DiffusionCacheException>(() => BlockCachingTargets.Parse("transformer2d,"));
        Assert.Throws<DiffusionCacheException>(() => BlockCachingTargets.Parse("transformer2d, resnet2d"));
        Assert.NotEqual(BlockCachingTargets.Transformers, BlockCachingTargets.TransformersAndResnets);
        Assert.DoesNotContain(BlockCachingTargets.TransformersAndResnets, BlockCachingTargets.All);   // All: single kinds
    }

    [Fact]
    public void ProfilesBothKindsTogetherAsEachAlone()
    {
        using var unet = Model();
        using var s = Scheduler();
        var request = Request(4);
        double[][] Table(BlockCachingTargets targets, out IReadOnlyList<string> blocks)
        {
            using var profiler = new ChangeProfiler(unet, targets);
            using var x = CachedSampling.Sample(unet, s, request, profiler);
            blocks = profiler.Blocks;
            return Assert.Single(profiler.Generations);
        }
        var both = Table(BlockCachingTargets.TransformersAndResnets, out var bothBlocks);
        var transformers = Table(BlockCachingTargets.Transformers, out var transformerBlocks);
        var resnets = Table(BlockCachingTargets.Resnets, out var resnetBlocks);
        foreach (var (table, blocks) in new[] { (transformers, transformerBlocks), (resnets, resnetBlocks) })
            for (int i = 0; i < blocks.Count; i++)
                Assert.Equal(table[i], both[bothBlocks.ToList().IndexOf(blocks[i])]);
    }

    [Fact]
    public void MeasuresTheRelativeL1ChangeOfEveryBlockWithoutChangingTheResult()
    {
        using var unet = Model();
        using var s = Scheduler();
        var request = Request(5);
        using var plain = DiffusionSampler.Sample(unet, s, request);
        using var profiler = new ChangeProfiler(unet, BlockCachingTargets.Resnets);
        using var recorder = new ChangeRecorder("up_blocks.1.resnets.0");
        using var attached = unet.Seam.Attach(recorder);
        using var profiled = CachedSampling.Sample(unet, s, request, profiler);
        Assert.True(BitwiseEqual(plain, profiled));

        var table = Assert.Single(profiler.Generations);
        Assert.Equal(17, table.Length);
        Assert.All(table, row => Assert.Equal(0.0, row[0]));
        Assert.All(table, row => Assert.All(row.Skip(1), v => Assert.True(v > 0 && double.IsFinite(v))));
        // Eq. 6 by hand for one block with a 1x1 shortcut (C = out - shortcut(in)).
        int i = profiler.Blocks.ToList().IndexOf("up_blocks.1.resnets.0");
        for (int k = 1; k < 5; k++)
        {
            var c = recorder.Changes[k].to(ScalarType.Float64);
            var previous = recorder.Changes[k - 1].to(ScalarType.Float64);
            double expected = (c - previous).abs().sum().item<double>() / c.abs().sum().item<double>();
            Assert.Equal(expected, table[i][k], 14);
        }
        Assert.Equal(5L, profiler.Statistics["up_blocks.1.resnets.0"].Computed);
    }

    /// <summary>Keeps C = out - PassThrough(in) of one block per call.</summary>
    private sealed class ChangeRecorder(string path) : IBlockHook, IDisposable
    {
        public List<Tensor> Changes { get; } = [];

        public BlockOutput Run(BlockCall call, Func<BlockOutput> compute)
        {
            var output = compute();
            if (call.Path == path)
            {
                using var pass = call.PassThrough!(call.Input);
                Changes.Add((output.Hidden - pass).DetachFromDisposeScope());
            }
            return output;
        }

        public void Dispose()
        {
            foreach (var t in Changes) t.Dispose();
        }
    }

    [Fact]
    public void AnUnfinishedGenerationIsNotPartOfTheProfile()
    {
        using var unet = Model();
        using var s = Scheduler();
        using var profiler = new ChangeProfiler(unet);
        using var cancel = new CancellationTokenSource();
        var stopper = new StopAfter(2, cancel);
        Assert.ThrowsAny<OperationCanceledException>(() => CachedSampling.Sample(unet, s, Request(5), profiler, [stopper], cancel.Token));
        Assert.Empty(profiler.Generations);
        using var x = CachedSampling.Sample(unet, s, Request(5), profiler);
        Assert.Single(profiler.Generations);
    }

    private sealed class StopAfter(int steps, CancellationTokenSource cancel) : IStepObserver
    {
        public void EndStep(StepInfo step, Tensor latents)
        {
            if (step.Index + 1 == steps) cancel.Cancel();
        }
    }

    [Fact]
    public void ABlockAnsweredByAnotherHookCannotBeProfiled()
    {
        using var unet = Model();
        using var s = Scheduler();
        using var policy = new BlockCachePolicy(unet, Schedule(unet, 4, _ => [0]), Solver);
        using var cache = unet.Seam.Attach(policy);        // outer: answers from its cache after step 0
        using var profiler = new ChangeProfiler(unet);
        var e = Assert.Throws<DiffusionCacheException>(() => CachedSampling.Sample(unet, s, Request(4), profiler, [policy]));
        Assert.Contains("did not run at step 1", e.Message);
    }
}
