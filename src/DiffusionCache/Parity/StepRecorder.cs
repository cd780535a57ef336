using DiffusionCache.Pipelines;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Parity;

/// <summary>Keeps a copy of every step's guided prediction and resulting latents, for comparison with golden
/// trajectories (<c>noise_pred.{i}</c>/<c>eps.{i}</c> and <c>x.{i}</c>). The copies are detached from the sampler's
/// dispose scopes and freed with the recorder.</summary>
public sealed class StepRecorder : IStepObserver, IDisposable
{
    public List<Tensor> Predictions { get; } = [];
    public List<Tensor> Latents { get; } = [];

    public void OnPrediction(StepInfo step, Tensor prediction) => Predictions.Add(prediction.clone().DetachFromDisposeScope());

    public void EndStep(StepInfo step, Tensor latents) => Latents.Add(latents.clone().DetachFromDisposeScope());

    public void Dispose()
    {
        foreach (var t in Predictions.Concat(Latents)) t.Dispose();
        Predictions.Clear();
        Latents.Clear();
    }
}
