using DiffusionCache.Models.Seam;
using DiffusionCache.Models.UNets;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Models.Seam;

public class BlockSeamTests
{
    private sealed class Recorder : IBlockHook
    {
        public List<string> Calls { get; } = [];
        public BlockOutput Run(BlockCall call, Func<BlockOutput> compute)
        {
            Calls.Add(call.Path);
            return compute();
        }
    }

    /// <summary>Answers for one block without running it: zero change, i.e. the block's pass-through.</summary>
    private sealed class Bypass(string path) : IBlockHook
    {
        public int Bypassed { get; private set; }
        public BlockOutput Run(BlockCall call, Func<BlockOutput> compute)
        {
            if (call.Path != path) return compute();
            Bypassed++;
            return new BlockOutput(call.PassThrough!(call.Input));
        }
    }

    [Fact]
    public void ObserverSeesEveryBlockAndLeavesOutputBitwiseEqual()
    {
        using var model = TinyModels.Sd1();
        var input = TinyModels.Input(model);
        using var plain = model.Forward(input);
        var recorder = new Recorder();
        Tensor observed;
        using (model.Seam.Attach(recorder)) observed = model.Forward(input);
        using (observed)
            Assert.True(plain.equal(observed).all().item<bool>());

        // Every registered site ran exactly once, and blocks wrap their layers (pre-order on entry).
        Assert.Equal(model.Seam.Sites.Select(s => s.Path).Order(), recorder.Calls.Order());
        Assert.True(recorder.Calls.IndexOf("down_blocks.0") < recorder.Calls.IndexOf("down_blocks.0.resnets.0"));
        Assert.Contains("up_blocks.1.attentions.1", recorder.Calls);
        Assert.Empty(model.Seam.Hooks);
    }

    [Fact]
    public void HookCanReplaceABlockAndDetaches()
    {
        using var model = TinyModels.Sd1();
        var input = TinyModels.Input(model);
        using var plain = model.Forward(input);
        var bypass = new Bypass("down_blocks.0.attentions.0");
        using (var attached = model.Seam.Attach(bypass))
        using (var replaced = model.Forward(input))
            Assert.False(plain.allclose(replaced, rtol: 0, atol: 1e-6));
        Assert.Equal(1, bypass.Bypassed);
        using var again = model.Forward(input);
        Assert.True(plain.equal(again).all().item<bool>());
    }

    [Fact]
    public void HooksComposeOutermostFirst()
    {
        using var model = TinyModels.Sd1();
        var outer = new Recorder();
        var bypass = new Bypass("mid_block.attentions.0");
        using (model.Seam.Attach(outer))
        using (model.Seam.Attach(bypass))
        using (model.Forward(TinyModels.Input(model))) { }
        // The outer observer still sees the call that the inner hook answered.
        Assert.Contains("mid_block.attentions.0", outer.Calls);
        Assert.Equal(1, bypass.Bypassed);
    }

    [Fact]
    public void ResidualSitesExposeTheirPassThrough()
    {
        using var model = TinyModels.Sd1();
        var kinds = new Dictionary<BlockKind, bool>();
        var probe = new Probe(kinds);
        using (model.Seam.Attach(probe))
        using (model.Forward(TinyModels.Input(model))) { }
        Assert.True(kinds[BlockKind.Resnet]);
        Assert.True(kinds[BlockKind.Transformer]);
        Assert.False(kinds[BlockKind.DownBlock]);
    }

    private sealed class Probe(Dictionary<BlockKind, bool> seen) : IBlockHook
    {
        public BlockOutput Run(BlockCall call, Func<BlockOutput> compute)
        {
            seen[call.Kind] = call.PassThrough is not null;
            return compute();
        }
    }

    [Fact]
    public void TransformerOutputIsChangePlusInput()
    {
        // eq. 4: out = C + in, so PassThrough(in) must be the input itself.
        using var model = TinyModels.Sd1();
        var check = new PassThroughCheck();
        using (model.Seam.Attach(check))
        using (model.Forward(TinyModels.Input(model))) { }
        Assert.True(check.Checked > 0);
    }

    private sealed class PassThroughCheck : IBlockHook
    {
        public int Checked { get; private set; }
        public BlockOutput Run(BlockCall call, Func<BlockOutput> compute)
        {
            var output = compute();
            if (call.Kind == BlockKind.Transformer)
            {
                using var through = call.PassThrough!(call.Input);
                Assert.True(through.equal(call.Input).all().item<bool>());
                Checked++;
            }
            return output;
        }
    }
}
