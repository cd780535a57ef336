using DiffusionCache.Caching.BlockCaching;
using DiffusionCache.Models.Seam;
using DiffusionCache.Models.UNets;
using DiffusionCache.Pipelines;
using DiffusionCache.Schedulers;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Training;

/// <summary>Makes the sampling request of one training batch from its dataset indices and the job's generator
/// (conditions, guidance). <c>Steps</c> is overridden with the schedule's step count; x_T comes from the job's
/// generator (so a resumed run continues exactly). The trainer disposes the request's tensors after the batch.</summary>
public delegate SamplingRequest DistillationRequests(Tensor indices, Generator generator);

/// <summary>
/// Trains a <see cref="ScaleShiftAdjustment"/> by student/teacher distillation on the student's own trajectory
/// (Block Caching Sec. 3.4, Fig. 5). Per batch, the student (the U-Net with the block cache and the adjustment)
/// denoises from pure noise; at every step the teacher (the same U-Net, uncached) runs on the student's current
/// sample, and the loss is the mean squared difference of every scheduled block's output, student vs teacher.
/// Each step's loss is back-propagated through the student's forward pass of that step into the adjustment; the
/// U-Net's weights are frozen and cached values are constants (no gradient through time), so memory stays that of
/// one forward pass. The sample then advances with the student's guided prediction, as at inference.
/// This is its own loop rather than <see cref="DiffusionSampler"/>: each step needs two forward passes, one with
/// gradients.
/// </summary>
public static class ScaleShiftDistillation
{
    /// <summary>Trains <paramref name="adjustment"/> in place; the U-Net's parameters are frozen for the job and
    /// unfrozen after it. Resumes from a checkpoint in <see cref="TrainingOptions.CheckpointDir"/>.</summary>
    /// <param name="unet">The model, student and teacher both; its weights do not change.</param>
    /// <param name="schedule">The cache schedule the student samples with (residual mode); its blocks are the ones
    /// compared and its step count is every trajectory's.</param>
    /// <param name="solver">The scheduler the trajectories step with (a fresh one per batch).</param>
    /// <param name="adjustment">The scale-shift adjustment to train, for <paramref name="schedule"/>'s blocks.</param>
    /// <param name="requests">Makes each batch's sampling request.</param>
    /// <param name="datasetSize">How many distinct indices <paramref name="requests"/> is given (e.g.
    /// conditions).</param>
    /// <param name="options">How to train.</param>
    /// <param name="progress">Receives a report after every step.</param>
    /// <param name="cancel">Stops after the current step, with a checkpoint saved, by throwing
    /// <see cref="OperationCanceledException"/>.</param>
    /// <returns>The EMA of the adjustment's weights, which the caller owns and disposes.</returns>
    public static ExponentialMovingAverage Train(DiffusionUNet unet, CacheSchedule schedule, SchedulerConfig solver,
        ScaleShiftAdjustment adjustment, DistillationRequests requests, long datasetSize, TrainingOptions options,
        IProgress<TrainingProgress>? progress = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(unet);
        ArgumentNullException.ThrowIfNull(schedule);
        ArgumentNullException.ThrowIfNull(adjustment);
        ArgumentNullException.ThrowIfNull(requests);
        using var policy = new BlockCachePolicy(unet, schedule, solver.ClassName, BlockCacheMode.Residual, adjustment);
        var frozen = unet.parameters().Where(p => p.requires_grad).ToList();
        foreach (var p in frozen) p.requires_grad_(false);
        unet.eval();
        try
        {
            var loop = new TrainingLoop(adjustment, datasetSize, options);
            return loop.Run((indices, generator) =>
            {
                var request = requests(indices, generator) with { Steps = schedule.NumInferenceSteps };
                try
                {
                    using var scheduler = SchedulerFactory.Create(solver);
                    return Trajectory(unet, scheduler, policy, request, generator);
                }
                finally
                {
                    request.Context?.Dispose();
                    request.UnconditionalContext?.Dispose();
                    request.ClassLabels?.Dispose();
                    request.InitialNoise?.Dispose();
                }
            }, progress, cancel);
        }
        finally
        {
            foreach (var p in frozen) p.requires_grad_(true);
        }
    }

    /// <summary>One student trajectory with a teacher target per step; accumulates gradients, returns the mean
    /// per-step loss.</summary>
    internal static double Trajectory(DiffusionUNet unet, IScheduler scheduler, BlockCachePolicy policy,
        SamplingRequest request, Generator generator)
    {
        scheduler.SetTimesteps(request.Steps);
        var timesteps = scheduler.Timesteps;
        var blocks = policy.Schedule.Blocks.ToHashSet(StringComparer.Ordinal);
        using var generation = NewDisposeScope();
        var p = unet.parameters().First();
        // x_T is drawn on the generator's device and moved (as diffusers' randn_tensor), so the job's CPU generator
        // gives the same trajectories whatever device the U-Net runs on. A stochastic solver draws each step's noise
        // on the sample's device: there, from a generator seeded by the job's.
        var x = (randn([request.Batch, unet.InChannels, request.Height, request.Width], ScalarType.Float32, generator.device, generator: generator)
            .to(p.device) * scheduler.InitNoiseSigma).DetachFromDisposeScope();
        var conditioning = DiffusionSampler.Conditioning(request, p.dtype, p.device);
        using var deviceGenerator = generator.device.type == p.device.type && generator.device.index == p.device.index ? null
            : new Generator((ulong)randint(0, long.MaxValue, [1], generator: generator).item<long>(), p.device);
        var noise = StepNoise.FromGenerator(deviceGenerator ?? generator);
        double total = 0;
        policy.BeginGeneration(request, timesteps);
        try
        {
            for (int i = 0; i < timesteps.Count; i++)
            {
                var step = new StepInfo(i, timesteps.Count, timesteps[i]);
                policy.BeginStep(step);
                using var scope = NewDisposeScope();
                var input = conditioning.Input(scheduler.ScaleModelInput(request.UsesGuidance ? cat([x, x]) : x, i).to(p.dtype),
                    tensor((float)timesteps[i], ScalarType.Float32, p.device));

                using var teacher = new OutputRecorder(blocks, keepGraph: false);
                using (no_grad())
                using (unet.Seam.Attach(teacher))
                    unet.Forward(input);

                using var student = new OutputRecorder(blocks, keepGraph: true);
                Tensor prediction;
                using (enable_grad())
                using (unet.Seam.Attach(student))        // outermost: sees what the cache answers
                using (unet.Seam.Attach(policy))
                {
                    prediction = unet.Forward(input);
                    // In float32 whatever the U-Net's compute type: a half-precision sum of squares loses the small
                    // differences the adjustment learns from.
                    var losses = blocks.Select(b => nn.functional.mse_loss(student.Outputs[b].to(ScalarType.Float32),
                        teacher.Outputs[b].to(ScalarType.Float32))).ToList();
                    var loss = stack(losses).mean();
                    if (loss.requires_grad) loss.backward();   // steps where every block computes carry no gradient
                    total += loss.item<float>();
                }
                var guided = request.UsesGuidance ? DiffusionSampler.Guide(prediction.detach().to(ScalarType.Float32), request.GuidanceScale)
                    : prediction.detach().to(ScalarType.Float32);
                var next = scheduler.Step(guided, i, x, noise);
                x.Dispose();
                x = next.DetachFromDisposeScope();
                ((IStepObserver)policy).EndStep(step, x);
            }
        }
        finally
        {
            policy.EndGeneration();
            x.Dispose();
        }
        return total / timesteps.Count;
    }

    /// <summary>Keeps the hidden output of the wanted blocks of one forward pass, outside the blocks' own dispose
    /// scopes (they end before the loss is computed); with <c>keepGraph</c> the handles stay on the gradient tape.</summary>
    private sealed class OutputRecorder(IReadOnlySet<string> wanted, bool keepGraph) : IBlockHook, IDisposable
    {
        public Dictionary<string, Tensor> Outputs { get; } = new(StringComparer.Ordinal);

        public BlockOutput Run(BlockCall call, Func<BlockOutput> compute)
        {
            var output = compute();
            if (wanted.Contains(call.Path))
            {
                if (Outputs.Remove(call.Path, out var old)) old.Dispose();
                Outputs[call.Path] = (keepGraph ? output.Hidden.alias() : output.Hidden.detach().clone()).DetachFromDisposeScope();
            }
            return output;
        }

        public void Dispose()
        {
            foreach (var t in Outputs.Values) t.Dispose();
            Outputs.Clear();
        }
    }
}
