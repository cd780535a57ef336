using System.Text.Json;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DiffusionCache.Evaluation;

/// <summary>
/// The second, independent metric network: a small pre-activation ResNet (He et al. 2016, "Identity Mappings in
/// Deep Residual Networks") with BatchNorm and ReLU, trained on Fashion-MNIST (32x32x1 in [-1, 1]) from another
/// seed than <see cref="FashionClassifier"/>. A strided 3x3 stem (32 channels, 32x32 to 16x16), three
/// pre-activation residual blocks (32 at 16x16, 64 at 8x8, 128 at 4x4; strided 3x3 convs and 1x1 projection
/// shortcuts where the shape changes),
/// a final BatchNorm-ReLU, global average pooling to the 128-d features, and a linear 10-way head. Residual
/// connections, batch statistics, ReLU, strided downsampling and no feature layer make its feature space differ
/// in kind from <see cref="FashionClassifier"/>'s (plain conv stack, GroupNorm, SiLU, max pooling, learned
/// 256-d embedding).
/// </summary>
public sealed class FashionResNet : MetricNetwork
{
    /// <summary>Width of the pooled features that FID and KID are computed on.</summary>
    public const int FeatureDim = 128;
    private static readonly int[] Widths = [32, 64, 128];

    private readonly Conv2d _stem;
    private readonly ModuleList<PreActBlock> _blocks;
    private readonly BatchNorm2d _norm;
    private readonly Linear _head;

    /// <summary>An untrained network (BatchNorm weight 1, bias 0; TorchSharp's default initialization otherwise),
    /// float32 on the CPU.</summary>
    public FashionResNet() : base(nameof(FashionResNet))
    {
        _stem = nn.Conv2d(1, Widths[0], 3, stride: 2, padding: 1, bias: false);
        _blocks = nn.ModuleList(
            new PreActBlock(Widths[0], Widths[0], 1),
            new PreActBlock(Widths[0], Widths[1], 2),
            new PreActBlock(Widths[1], Widths[2], 2));
        _norm = BatchNorm(Widths[2]);
        _head = nn.Linear(FeatureDim, FashionClassifier.NumClasses);
        register_module("stem", _stem);
        register_module("blocks", _blocks);
        register_module("norm", _norm);
        register_module("head", _head);
    }

    /// <summary>Submodules are registered explicitly under their checkpoint names.</summary>
    protected override void RegisterComponents() { }

    internal static BatchNorm2d BatchNorm(long channels)
    {
        var norm = nn.BatchNorm2d(channels);
        using var noGrad = no_grad();
        norm.weight.fill_(1);
        norm.bias!.zero_();
        return norm;
    }

    /// <inheritdoc/>
    public override int FeatureSize => FeatureDim;

    /// <summary>Class logits [B, 10].</summary>
    public override Tensor forward(Tensor images)
    {
        using var features = Features(images);
        return _head.call(features);
    }

    /// <summary>The pooled features [B, 128] after the final BatchNorm and ReLU.</summary>
    public override Tensor Features(Tensor images)
    {
        using var scope = NewDisposeScope();
        var h = _stem.call(images);
        foreach (var block in _blocks) h = block.call(h);
        return nn.functional.relu(_norm.call(h)).mean([2, 3]).MoveToOuterDisposeScope();
    }

    /// <inheritdoc/>
    public override string ToConfigJson() => JsonSerializer.Serialize(new Dictionary<string, object>
    {
        ["_class_name"] = nameof(FashionResNet),
        ["stem_stride"] = 2,
        ["widths"] = Widths,
        ["feature_dim"] = FeatureDim,
        ["num_classes"] = FashionClassifier.NumClasses,
        ["input"] = "32x32x1 in [-1, 1]",
    }, new JsonSerializerOptions { WriteIndented = true });

    /// <summary>BN-ReLU-conv3x3(stride)-BN-ReLU-conv3x3 plus the identity, or a strided 1x1 projection of the
    /// pre-activated input when the shape changes.</summary>
    private sealed class PreActBlock : nn.Module<Tensor, Tensor>
    {
        private readonly BatchNorm2d _norm1, _norm2;
        private readonly Conv2d _conv1, _conv2;
        private readonly Conv2d? _shortcut;

        public PreActBlock(int inChannels, int outChannels, int stride) : base(nameof(PreActBlock))
        {
            _norm1 = BatchNorm(inChannels);
            _conv1 = nn.Conv2d(inChannels, outChannels, 3, stride: stride, padding: 1, bias: false);
            _norm2 = BatchNorm(outChannels);
            _conv2 = nn.Conv2d(outChannels, outChannels, 3, padding: 1, bias: false);
            register_module("norm1", _norm1);
            register_module("conv1", _conv1);
            register_module("norm2", _norm2);
            register_module("conv2", _conv2);
            if (stride != 1 || inChannels != outChannels)
            {
                _shortcut = nn.Conv2d(inChannels, outChannels, 1, stride: stride, bias: false);
                register_module("shortcut", _shortcut);
            }
        }

        protected override void RegisterComponents() { }

        public override Tensor forward(Tensor x)
        {
            using var scope = NewDisposeScope();
            var a = nn.functional.relu(_norm1.call(x));
            var skip = _shortcut is null ? x : _shortcut.call(a);
            var h = _conv1.call(a);
            h = _conv2.call(nn.functional.relu(_norm2.call(h)));
            return (h + skip).MoveToOuterDisposeScope();
        }
    }
}
