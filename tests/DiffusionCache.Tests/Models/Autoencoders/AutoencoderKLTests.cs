using DiffusionCache.Formats;
using DiffusionCache.Formats.Safetensors;
using DiffusionCache.Models.Autoencoders;
using DiffusionCache.Models.Config;
using DiffusionCache.Models.Loading;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Models.Autoencoders;

public sealed class AutoencoderKLTests
{
    /// <summary>A one-channel 32x32 VAE with three blocks, i.e. two downsamplings: 32x32x1 ↔ 8x8x4.</summary>
    private static readonly AutoencoderKLConfig Small = new()
    {
        InChannels = 1,
        OutChannels = 1,
        DownBlockTypes = ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
        UpBlockTypes = ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
        BlockOutChannels = [8, 16, 16],
        LayersPerBlock = 1,
        NormNumGroups = 4,
        LatentChannels = 4,
    };

    [Fact]
    public void EncodesAndDecodesWithTheDownFactorOfTheBlocks()
    {
        using var scope = NewDisposeScope();
        using var model = new AutoencoderKL(Small);
        var image = rand(2, 1, 32, 32) * 2 - 1;
        using var posterior = model.Encode(image);
        Assert.Equal([2L, 4, 8, 8], posterior.Mean.shape);
        Assert.Equal([2L, 4, 8, 8], posterior.LogVar.shape);
        Assert.Equal(4, model.DownFactor);

        var decoded = model.Decode(posterior.Mode());
        Assert.Equal([2L, 1, 32, 32], decoded.shape);
        Assert.Equal([2L, 1, 32, 32], model.Decode(posterior.Sample(new Generator(7))).shape);
    }

    [Fact]
    public void OddSidesFollowDiffusersPadding()
    {
        // Downsample2D pads right/bottom by one, then convolves 3x3 with stride 2 and no padding: n → floor((n - 2) / 2) + 1,
        // so 13 → 6 → 3 and 14 → 7 → 3.
        using var scope = NewDisposeScope();
        using var model = new AutoencoderKL(Small);
        using var posterior = model.Encode(zeros(1, 1, 13, 14));
        Assert.Equal([1L, 4, 3, 3], posterior.Mean.shape);
    }

    [Fact]
    public void ParametersHaveDiffusersNames()
    {
        using var model = new AutoencoderKL(Small);
        var names = model.state_dict().Keys.ToHashSet();
        string[] expected =
        [
            "encoder.conv_in.weight", "encoder.down_blocks.0.resnets.0.conv1.weight",
            "encoder.down_blocks.0.downsamplers.0.conv.weight", "encoder.down_blocks.1.downsamplers.0.conv.bias",
            "encoder.down_blocks.1.resnets.0.conv_shortcut.weight", "encoder.mid_block.resnets.1.norm2.weight",
            "encoder.mid_block.attentions.0.group_norm.weight", "encoder.mid_block.attentions.0.to_q.weight",
            "encoder.mid_block.attentions.0.to_k.bias", "encoder.mid_block.attentions.0.to_v.weight",
            "encoder.mid_block.attentions.0.to_out.0.weight", "encoder.conv_norm_out.weight", "encoder.conv_out.weight",
            "quant_conv.weight", "post_quant_conv.bias", "decoder.conv_in.weight", "decoder.mid_block.attentions.0.to_out.0.bias",
            "decoder.up_blocks.0.resnets.1.conv2.weight", "decoder.up_blocks.0.upsamplers.0.conv.weight",
            "decoder.up_blocks.2.resnets.1.norm1.bias", "decoder.up_blocks.2.resnets.0.conv_shortcut.weight",
            "decoder.conv_norm_out.bias", "decoder.conv_out.weight",
        ];
        Assert.All(expected, n => Assert.Contains(n, names));
        // The last encoder block does not downsample and the last decoder block does not upsample; decoder blocks
        // have layers_per_block + 1 resnets.
        Assert.DoesNotContain(names, n => n.StartsWith("encoder.down_blocks.2.downsamplers", StringComparison.Ordinal));
        Assert.DoesNotContain(names, n => n.StartsWith("decoder.up_blocks.2.upsamplers", StringComparison.Ordinal));
        Assert.DoesNotContain(names, n => n.StartsWith("encoder.down_blocks.0.resnets.1", StringComparison.Ordinal));
        Assert.Contains("decoder.up_blocks.2.resnets.1.conv1.weight", names);
        Assert.DoesNotContain(names, n => n.Contains("time_emb_proj", StringComparison.Ordinal));
    }

    /// <summary>state_dict must hold each tensor once, under its diffusers name: TorchSharp would otherwise also
    /// register every module field under its C# name (<c>_norm1</c>), and a saved checkpoint would carry both.</summary>
    [Fact]
    public void StateDictHoldsEachParameterOnceUnderItsDiffusersName()
    {
        using var model = new AutoencoderKL(Small);
        var stateKeys = model.state_dict().Keys.Order(StringComparer.Ordinal).ToList();
        var parameterNames = model.named_parameters().Select(p => p.name).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(parameterNames, stateKeys);
        Assert.DoesNotContain(stateKeys, k => k.Contains("._", StringComparison.Ordinal));
    }

    /// <summary>A freshly built model is a valid starting point for training: GroupNorms start at weight 1, bias 0
    /// (TorchSharp leaves them uninitialised) and the output is finite.</summary>
    [Fact]
    public void FreshModelStartsFromPyTorchInitialisation()
    {
        using var scope = NewDisposeScope();
        using var model = new AutoencoderKL(Small);
        foreach (var (name, p) in model.named_parameters())
        {
            Assert.True(p.isfinite().all().item<bool>(), $"{name} is not finite");
            if (name.EndsWith("norm1.weight", StringComparison.Ordinal) || name.EndsWith("group_norm.weight", StringComparison.Ordinal) ||
                name.EndsWith("conv_norm_out.weight", StringComparison.Ordinal))
                Assert.True(p.eq(1).all().item<bool>(), $"{name} is not initialised to 1");
            if (name.EndsWith("norm2.bias", StringComparison.Ordinal))
                Assert.True(p.eq(0).all().item<bool>(), $"{name} is not initialised to 0");
        }
        using var posterior = model.Encode(rand(1, 1, 32, 32));
        Assert.True(model.Decode(posterior.Mean).isfinite().all().item<bool>());
    }

    [Fact]
    public void OptionalConvsAndMidAttentionCanBeLeftOut()
    {
        using var scope = NewDisposeScope();
        using var model = new AutoencoderKL(Small with { UseQuantConv = false, UsePostQuantConv = false, MidBlockAddAttention = false });
        var names = model.state_dict().Keys.ToList();
        Assert.DoesNotContain(names, n => n.StartsWith("quant_conv", StringComparison.Ordinal) || n.StartsWith("post_quant_conv", StringComparison.Ordinal));
        Assert.DoesNotContain(names, n => n.Contains("attentions", StringComparison.Ordinal));
        using var posterior = model.Encode(zeros(1, 1, 32, 32));
        Assert.Equal([1L, 1, 32, 32], model.Decode(posterior.Mean).shape);
    }

    [Fact]
    public void WrongInputChannelsAreAnError()
    {
        using var model = new AutoencoderKL(Small);
        using var rgb = zeros(1, 3, 32, 32);
        var e = Assert.Throws<DiffusionCacheException>(() => model.Encode(rgb));
        Assert.Contains("[B, 1, H, W]", e.Message);
    }

    /// <summary>The model is trainable: a VAE loss back-propagates into the encoder's first and the decoder's last
    /// layer through the reparameterised sample.</summary>
    [Fact]
    public void GradientsReachEveryEndOfTheModel()
    {
        using var scope = NewDisposeScope();
        using var model = new AutoencoderKL(Small);
        model.train();
        var image = rand(2, 1, 32, 32) * 2 - 1;
        using var posterior = model.Encode(image);
        var reconstruction = model.Decode(posterior.Sample(new Generator(1)));
        var loss = (reconstruction - image).pow(2).mean() + 1e-3 * posterior.Kl().mean();
        loss.backward();
        var parameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var name in new[] { "encoder.conv_in.weight", "quant_conv.weight", "decoder.conv_out.weight",
                     "encoder.mid_block.attentions.0.to_q.weight" })
        {
            var grad = parameters[name].grad;
            Assert.NotNull(grad);
            Assert.True(grad.abs().sum().item<float>() > 0, $"{name} has a zero gradient");
        }
    }

    [Fact]
    public void StrictLoadListsMissingUnexpectedAndMisshapenTensors()
    {
        using var scope = NewDisposeScope();
        using var model = new AutoencoderKL(Small);
        var tensors = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone());
        tensors.Remove("encoder.mid_block.attentions.0.to_k.weight");
        tensors["encoder.mid_block.attentions.0.to_k_typo.weight"] = zeros(16, 16);
        tensors["decoder.conv_out.weight"] = zeros(3, 8, 3, 3);
        var source = new DictionarySource(tensors);

        using var fresh = new AutoencoderKL(Small);
        var e = Assert.Throws<CheckpointMismatchException>(() => StateDictLoader.Load(fresh, source));
        Assert.Equal(["encoder.mid_block.attentions.0.to_k.weight"], e.Missing);
        Assert.Equal(["encoder.mid_block.attentions.0.to_k_typo.weight"], e.Unexpected);
        Assert.Single(e.ShapeMismatches);
        Assert.Contains("decoder.conv_out.weight", e.ShapeMismatches[0]);
    }

    [Fact]
    public void StrictLoadCopiesAMatchingStateDict()
    {
        using var scope = NewDisposeScope();
        using var model = new AutoencoderKL(Small);
        var source = new DictionarySource(model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone()));
        using var copy = new AutoencoderKL(Small);
        StateDictLoader.Load(copy, source);
        var image = rand(1, 1, 32, 32);
        using var a = model.Encode(image);
        using var b = copy.Encode(image);
        Assert.True(a.Mean.eq(b.Mean).all().item<bool>());
    }

    [Fact]
    public void LoaderRefusesAFolderWithoutConfig()
    {
        var dir = Directory.CreateTempSubdirectory("vae-test-").FullName;
        try
        {
            var e = Assert.ThrowsAny<DiffusionCacheException>(() => AutoencoderLoader.Load(dir));
            Assert.Contains("config.json", e.Message);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>An in-memory checkpoint, so that mismatches can be made without writing files.</summary>
    private sealed class DictionarySource(Dictionary<string, Tensor> tensors) : ITensorSource
    {
        public string Description => "in-memory checkpoint";
        public IReadOnlyCollection<string> Names => tensors.Keys;
        public SafetensorsEntry Entry(string name) =>
            new(name, SafetensorsDTypes.FromScalarType(tensors[name].dtype), tensors[name].shape, 0, 0);
        public Tensor Load(string name, ScalarType? dtype = null, Device? device = null) =>
            tensors[name].to(dtype ?? tensors[name].dtype, device ?? tensors[name].device);
    }
}
