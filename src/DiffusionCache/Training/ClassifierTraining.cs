using DiffusionCache.Evaluation;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Training;

/// <summary>Trains a metric network (<see cref="FashionClassifier"/>, <see cref="FashionResNet"/>): cross-entropy
/// with random horizontal flips and one-pixel shifts as augmentation.</summary>
public static class ClassifierTraining
{
    /// <summary>Trains <paramref name="model"/> in place. Resumes from a checkpoint in
    /// <see cref="TrainingOptions.CheckpointDir"/>.</summary>
    /// <param name="model">The classifier to train, float32 on any device.</param>
    /// <param name="images">float32 [N, 1, 32, 32] in [-1, 1]. Batches are drawn and augmented where the data lives
    /// (the generator's draws too), then moved to the model's device.</param>
    /// <param name="labels">int64 [N] class labels in 0..9, on the device of <paramref name="images"/>.</param>
    /// <param name="options">How to train.</param>
    /// <param name="progress">Receives a report after every step.</param>
    /// <param name="cancel">Stops after the current step, with a checkpoint saved, by throwing
    /// <see cref="OperationCanceledException"/>.</param>
    /// <returns>The EMA of the weights, which the caller owns and disposes.</returns>
    public static ExponentialMovingAverage Train(MetricNetwork model, Tensor images, Tensor labels, TrainingOptions options,
        IProgress<TrainingProgress>? progress = null, CancellationToken cancel = default)
    {
        var loop = new TrainingLoop(model, images.shape[0], options);
        var device = model.parameters().First().device;
        return loop.Run((indices, generator) =>
        {
            var at = indices.to(images.device);
            var x = images.index_select(0, at);
            var y = labels.index_select(0, at);
            long b = x.shape[0];
            var flip = (rand([b], generator: generator) < 0.5).view(b, 1, 1, 1).to(x.device);
            x = where(flip, x.flip(3), x);
            var shifts = randint(-1, 2, [2], generator: generator);
            x = x.roll([shifts[0].item<long>(), shifts[1].item<long>()], [2, 3]);
            return nn.functional.cross_entropy(model.call(x.to(device)), y.to(device));
        }, progress, cancel);
    }

    /// <summary>Top-1 accuracy on labelled images (each batch is moved to the model's device).</summary>
    public static double Accuracy(MetricNetwork model, Tensor images, Tensor labels, int batch = 1000)
    {
        using var noGrad = no_grad();
        model.eval();
        var device = model.parameters().First().device;
        long correct = 0;
        for (long i = 0; i < images.shape[0]; i += batch)
        {
            using var scope = NewDisposeScope();
            long n = Math.Min(batch, images.shape[0] - i);
            var predicted = model.call(images.narrow(0, i, n).to(device)).argmax(1);
            correct += (predicted == labels.narrow(0, i, n).to(device)).sum().item<long>();
        }
        return (double)correct / images.shape[0];
    }

    /// <summary>
    /// Sets every BatchNorm layer's running statistics to the average of its batch statistics over
    /// <paramref name="images"/> (in order, <paramref name="batch"/> at a time, no augmentation, no gradients), then
    /// puts the model in eval mode. Needed after <see cref="ExponentialMovingAverage.CopyTo"/>: the running statistics
    /// were gathered for the live weights, not the averaged ones. Deterministic; a model without BatchNorm is only
    /// put in eval mode.
    /// </summary>
    /// <param name="model">The network, with its final weights.</param>
    /// <param name="images">Training images [N, 1, 32, 32] in [-1, 1] (e.g. the first 5000).</param>
    /// <param name="batch">Images per batch.</param>
    public static void RecalibrateBatchNorm(nn.Module<Tensor, Tensor> model, Tensor images, int batch = 500)
    {
        var norms = model.modules().OfType<TorchSharp.Modules.BatchNorm2d>().ToList();
        if (norms.Count > 0)
        {
            using var noGrad = no_grad();
            var saved = norms.Select(n => n.momentum).ToList();
            model.train();
            try
            {
                int k = 0;
                for (long i = 0; i < images.shape[0]; i += batch, k++)
                {
                    // momentum 1/(k+1) makes the running statistics the plain mean of the k+1 batches' statistics
                    foreach (var n in norms) n.momentum = 1.0 / (k + 1);
                    using var scope = NewDisposeScope();
                    model.call(images.narrow(0, i, Math.Min(batch, images.shape[0] - i)));
                }
            }
            finally
            {
                for (int i = 0; i < norms.Count; i++) norms[i].momentum = saved[i];
            }
        }
        model.eval();
    }
}
