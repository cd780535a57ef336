using DiffusionCache.Pipelines;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Parity;

/// <summary>Keeps a copy of every step's guided prediction and resulting latents, for comparison with golden
/// trajectories (<c>noise_pred.{i}</c>/<c>eps.{i}</c> and <c>x.{i}</c>). Copies join the caller's dispose scope.</summary>
public sealed class StepRecorder : IStepObserver
{
    public List<Tensor> Predictions { get; } = [];
    public List<Tensor> Latents { get; } = [];

    public void OnPrediction(StepInfo step, Tensor prediction) => Predictions.Add(prediction.clone().MoveToOuterDisposeScope());

    public void EndStep(StepInfo step, Tensor latents) => Latents.Add(latents.clone());
}
