using DiffusionCache.Evaluation;
using DiffusionCache.Tests.Models;
using DiffusionCache.Training;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Evaluation;

public class FashionResNetTests
{
    [Fact]
    public void Shapes_and_architecture()
    {
        manual_seed(0);
        using var model = new FashionResNet();
        model.eval();
        using var x = rand([3, 1, 32, 32]) * 2 - 1;
        using var logits = model.call(x);
        using var features = model.Features(x);
        Assert.Equal(new long[] { 3, 10 }, logits.shape);
        Assert.Equal(new long[] { 3, FashionResNet.FeatureDim }, features.shape);
        Assert.Equal(128, model.FeatureSize);
        Assert.True(features.ge(0).all().item<bool>());   // after ReLU
        var names = model.named_buffers().Select(b => b.name).ToList();
        Assert.Contains("blocks.0.norm1.running_mean", names);
        Assert.Contains("blocks.1.shortcut.weight", model.named_parameters().Select(p => p.name));
        Assert.DoesNotContain("blocks.0.shortcut.weight", model.named_parameters().Select(p => p.name));
        long parameters = model.parameters().Sum(p => p.numel());
        Assert.InRange(parameters, 250_000, 400_000);   // about 1.2 MB in float32
    }

    [Fact]
    public void Folder_round_trip_keeps_weights_and_batchnorm_statistics()
    {
        manual_seed(2);
        using var model = new FashionResNet();
        using var images = rand([64, 1, 32, 32]) * 2 - 1;
        ClassifierTraining.RecalibrateBatchNorm(model, images, batch: 32);
        string dir = Path.Combine(TinyModels.TempDir(), "resnet");
        ClassifierFolder.Save(dir, model);
        using var loaded = ClassifierFolder.LoadNetwork(dir);
        Assert.IsType<FashionResNet>(loaded);
        using var expected = model.call(images);
        using var actual = loaded.call(images);
        Assert.True(expected.allclose(actual, rtol: 0, atol: 1e-6));
        Assert.Throws<DiffusionCacheException>(() => ClassifierFolder.Load(dir));   // not a FashionClassifier

        string a = Path.Combine(TinyModels.TempDir(), "classifier");
        using (var classifier = new FashionClassifier()) ClassifierFolder.Save(a, classifier);
        using var loadedA = ClassifierFolder.LoadNetwork(a);
        Assert.IsType<FashionClassifier>(loadedA);
        Assert.Empty(loadedA.named_buffers());
    }

    [Fact]
    public void Recalibration_sets_running_statistics_to_the_mean_of_batch_statistics()
    {
        manual_seed(3);
        using var model = new FashionResNet();
        using var images = rand([40, 1, 32, 32]) * 2 - 1;
        ClassifierTraining.RecalibrateBatchNorm(model, images, batch: 20);
        Assert.False(model.training);

        // The first BatchNorm sees the stem's output: its running mean is the mean of the two batches' channel means.
        var modules = model.named_modules().ToDictionary(m => m.name, m => m.module);
        var stem = (TorchSharp.Modules.Conv2d)modules["stem"];
        var norm = (TorchSharp.Modules.BatchNorm2d)modules["blocks.0.norm1"];
        using var noGrad = no_grad();
        using var h1 = stem.call(images.narrow(0, 0, 20));
        using var h2 = stem.call(images.narrow(0, 20, 20));
        using var expectedMean = (h1.mean([0, 2, 3]) + h2.mean([0, 2, 3])) / 2;
        using var expectedVar = (h1.var([0, 2, 3]) + h2.var([0, 2, 3])) / 2;   // unbiased per batch, as BatchNorm keeps it
        Assert.True(norm.running_mean!.allclose(expectedMean, rtol: 1e-4, atol: 1e-6));
        Assert.True(norm.running_var!.allclose(expectedVar, rtol: 1e-4, atol: 1e-6));
        Assert.Equal(0.1, norm.momentum);   // restored
    }
}
