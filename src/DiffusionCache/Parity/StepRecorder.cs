using DiffusionCache.Pipelines;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Parity;

/// <summary>Keeps a copy of every step's guided prediction and resulting latents, for comparison with golden
/// trajectories (<c>noise_pred.{i}</c>/<c>eps.{i}</c> and <c>x.{i}</c>). The copies are detached from the sampler's
/// dispose scopes and freed with the recorder.</summary>
public sealed class StepRecorder : IStepObserver, IDisposable
{
    /// <summary>The guided prediction of every step, in step order (golden <c>noise_pred.{i}</c> / <c>eps.{i}</c>).
    /// Owned by the recorder.</summary>
    public List<Tensor> Predictions { get; } = [];

    /// <summary>The latents after every step, in step order (golden <c>x.{i}</c>). Owned by the recorder.</summary>
    public List<Tensor> Latents { get; } = [];

    /// <summary>Keeps a copy of the step's guided prediction in <see cref="Predictions"/>.</summary>
    public void OnPrediction(StepInfo step, Tensor prediction) => Predictions.Add(prediction.clone().DetachFromDisposeScope());

    /// <summary>Keeps a copy of the latents after the step in <see cref="Latents"/>.</summary>
    public void EndStep(StepInfo step, Tensor latents) => Latents.Add(latents.clone().DetachFromDisposeScope());

    /// <summary>Frees every kept copy and empties both lists.</summary>
    public void Dispose()
    {
        foreach (var t in Predictions.Concat(Latents)) t.Dispose();
        Predictions.Clear();
        Latents.Clear();
    }
}
