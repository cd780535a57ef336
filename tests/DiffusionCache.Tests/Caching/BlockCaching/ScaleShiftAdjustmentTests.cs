using DiffusionCache.Caching;
using DiffusionCache.Caching.BlockCaching;
using DiffusionCache.Formats.Safetensors;
using DiffusionCache.Pipelines;
using DiffusionCache.Tests.TestSupport;
using static DiffusionCache.Tests.Caching.BlockCaching.BlockCacheFixtures;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Caching.BlockCaching;

public class ScaleShiftAdjustmentTests
{
    private const int Steps = 6;

    private static IReadOnlyList<int> Sparse(int i) => [.. Enumerable.Range(0, Steps).Where(k => k % (2 + i % 3) == 0)];

    /// <summary>Sets every layer's parameters from a seeded generator, so that scale and shift depend on t.</summary>
    private static void Randomize(ScaleShiftAdjustment adjustment, ulong seed = 3)
    {
        var g = new Generator(seed);
        using var noGrad = no_grad();
        foreach (var p in adjustment.parameters()) p.copy_(randn(p.shape, generator: g) * 0.1);
    }

    [Fact]
    public void The_default_path_is_beside_the_schedule_named_after_it_and_the_variant()
    {
        Assert.Equal(Path.GetFullPath("/x/cache/fast.scaleshift.safetensors"), ScaleShiftAdjustment.DefaultPathFor("/x/cache/fast.json"));
        Assert.Equal(Path.GetFullPath("/x/fast.scaleshift-out0.5-unroll4.safetensors"), ScaleShiftAdjustment.DefaultPathFor("/x/fast.json", "out0.5-unroll4"));
    }

    [Fact]
    public void Resnet_layers_are_sized_by_their_output_channels_with_both_kinds_together()
    {
        using var unet = Model();
        var schedule = Schedule(unet, Steps, Sparse, BlockCachingTargets.TransformersAndResnets);
        using var adjustment = ScaleShiftAdjustment.For(unet, schedule);
        Assert.Equal(schedule.Blocks, adjustment.Blocks.Select(b => b.Path));
        var channels = adjustment.Blocks.ToDictionary(b => b.Path, b => b.Channels);
        Assert.Equal(16, channels["down_blocks.0.resnets.0"]);
        Assert.Equal(32, channels["down_blocks.1.resnets.0"]);   // 16 in, 32 out: the layer follows the output
        Assert.Equal(channels["down_blocks.1.attentions.0"], channels["down_blocks.1.resnets.0"]);
    }

    [Fact]
    public void Layers_are_sized_by_the_channels_of_the_scheduled_blocks()
    {
        using var unet = Model();
        var schedule = Schedule(unet, Steps, Sparse);
        using var adjustment = ScaleShiftAdjustment.For(unet, schedule);
        Assert.Equal(schedule.Blocks, adjustment.Blocks.Select(b => b.Path));
        // tiny-sd-unet-bc: block_out_channels [16, 32]; down level 0 and the last up level run at 16 channels.
        Assert.All(adjustment.Blocks, b => Assert.Contains(b.Channels, new[] { 16, 32 }));
        Assert.Equal(16, adjustment.Blocks.Single(b => b.Path == "down_blocks.0.attentions.0").Channels);
    }

    /// <summary>The same generation with the sparse schedule, plain and with an adjustment (random when asked).</summary>
    private static (Tensor Plain, Tensor Adjusted) SampleBoth(bool randomize)
    {
        using var unet = Model();
        var schedule = Schedule(unet, Steps, Sparse);
        using var adjustment = ScaleShiftAdjustment.For(unet, schedule);
        if (randomize) Randomize(adjustment);
        var request = Request(Steps);
        using var s = Scheduler();
        using var plain = new BlockCachePolicy(unet, schedule, Solver);
        using var adjusted = new BlockCachePolicy(unet, schedule, Solver, adjustment: adjustment);
        Assert.EndsWith("+ scale-shift", adjusted.Name);
        return (CachedSampling.Sample(unet, s, request, plain), CachedSampling.Sample(unet, s, request, adjusted));
    }

    [Fact]
    public void An_untrained_adjustment_is_the_identity()
    {
        var (a, b) = SampleBoth(randomize: false);
        using (a)
        using (b)
            Assert.True(BitwiseEqual(a, b));
    }

    [Fact]
    public void Apply_scales_and_shifts_each_channel_by_a_function_of_the_timestep()
    {
        using var adjustment = new ScaleShiftAdjustment([("blk", 3)], embeddingDim: 8);
        using (no_grad())
        {
            var bias = adjustment.parameters().Single(p => p.dim() == 1);
            bias.copy_(tensor(new float[] { 0.5f, -1f, 0f, 1f, 2f, 3f }));   // scale - 1 per channel, then shift
        }
        using var x = ones(2, 3, 4, 4);
        using var y = adjustment.Apply("blk", x, timestep: 500);
        Assert.Equal(new[] { 2.5f, 2f, 4f }, y.mean([0, 2, 3]).data<float>().ToArray());

        Randomize(adjustment);
        using var early = adjustment.Apply("blk", x, timestep: 900);
        using var late = adjustment.Apply("blk", x, timestep: 100);
        Assert.False(early.allclose(late));
        // Same scale and shift at every position and for every batch item.
        Assert.True(early.select(0, 0).allclose(early.select(0, 1)));
        Assert.Equal(0.0, early.std([2, 3]).abs().max().item<float>(), 6);
    }

    [Fact]
    public void The_per_generation_table_agrees_with_evaluating_each_call()
    {
        using var adjustment = new ScaleShiftAdjustment([("a", 3), ("b", 5)], embeddingDim: 8);
        Randomize(adjustment);
        using var table = adjustment.Tabulate([999, 500, 1]);
        using var x = randn(2, 5, 4, 4);
        using var expected = adjustment.Apply("b", x, 500);
        using var actual = table.Apply("b", 1, x);
        Assert.True(actual.allclose(expected, rtol: 1e-6, atol: 1e-6));
        Assert.Throws<DiffusionCacheException>(() => table.Apply("c", 0, x));
    }

    [Fact]
    public void A_trained_adjustment_changes_what_reused_blocks_answer()
    {
        var (a, b) = SampleBoth(randomize: true);
        using (a)
        using (b)
            Assert.False(a.allclose(b, rtol: 0, atol: 1e-5));

        // Nothing is reused when every block computes every step: the adjustment then changes nothing.
        using var unet = Model();
        var request = Request(Steps);
        using var s = Scheduler();
        var always = Schedule(unet, Steps, _ => [.. Enumerable.Range(0, Steps)]);
        using var alwaysAdjusted = ScaleShiftAdjustment.For(unet, always);
        Randomize(alwaysAdjusted);
        using var uncached = DiffusionSampler.Sample(unet, s, request);
        using var policy = new BlockCachePolicy(unet, always, Solver, adjustment: alwaysAdjusted);
        using var c = CachedSampling.Sample(unet, s, request, policy);
        Assert.True(BitwiseEqual(uncached, c));
    }

    [Fact]
    public void Saved_adjustments_load_with_the_same_weights_and_description()
    {
        using var unet = Model();
        var schedule = Schedule(unet, Steps, Sparse);
        using var adjustment = ScaleShiftAdjustment.For(unet, schedule, embeddingDim: 16);
        Randomize(adjustment);
        adjustment.Description = new Dictionary<string, string> { ["schedule"] = "schedule-ddim-6.json" };
        using var dir = new TempFolder();
        adjustment.Save(dir.File("ss.safetensors"));

        using var loaded = ScaleShiftAdjustment.Load(dir.File("ss.safetensors"));
        Assert.Equal(adjustment.Blocks, loaded.Blocks);
        Assert.Equal(16, loaded.EmbeddingDim);
        Assert.Equal("schedule-ddim-6.json", loaded.Description["schedule"]);
        using var x = randn(2, 16, 8, 8);
        using var expected = adjustment.Apply("down_blocks.0.attentions.0", x, 321);
        using var actual = loaded.Apply("down_blocks.0.attentions.0", x, 321);
        Assert.True(BitwiseEqual(expected, actual));
        loaded.Validate(schedule);
    }

    [Fact]
    public void Files_and_schedules_that_do_not_fit_are_refused()
    {
        using var unet = Model();
        var schedule = Schedule(unet, Steps, Sparse);
        using var dir = new TempFolder();
        SafetensorsWriter.Write(dir.File("other.safetensors"), [KeyValuePair.Create("w", zeros(2))]);
        Assert.Contains("not a scale-shift adjustment", Assert.Throws<DiffusionCacheException>(() => ScaleShiftAdjustment.Load(dir.File("other.safetensors"))).Message);

        using var partial = new ScaleShiftAdjustment([(schedule.Blocks[0], 16), ("up_blocks.9.attentions.0", 8)]);
        var error = Assert.Throws<DiffusionCacheException>(() => new BlockCachePolicy(unet, schedule, Solver, adjustment: partial));
        Assert.Contains($"no layer for {schedule.Blocks[1]}", error.Message);
        Assert.Contains("up_blocks.9.attentions.0", error.Message);
        Assert.Throws<DiffusionCacheException>(() => new ScaleShiftAdjustment([("a", 4)], embeddingDim: 7));
    }
}
