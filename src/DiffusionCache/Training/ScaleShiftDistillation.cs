using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using DiffusionCache.Caching.BlockCaching;
using DiffusionCache.Models.Seam;
using DiffusionCache.Models.UNets;
using DiffusionCache.Pipelines;
using DiffusionCache.Runtime;
using DiffusionCache.Schedulers;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Training;

/// <summary>Makes the sampling request of one training batch from its dataset indices and the job's generator
/// (conditions, guidance). <c>Steps</c> is overridden with the schedule's step count; x_T comes from the job's
/// generator (so a resumed run continues exactly). The trainer disposes the request's tensors after the batch.</summary>
public delegate SamplingRequest DistillationRequests(Tensor indices, Generator generator);

/// <summary>The losses of one distillation trajectory, each the mean over its denoising steps.</summary>
/// <param name="Loss">The optimized loss: <see cref="ScaleShiftDistillationOptions.BlockLossWeight"/> × block MSE +
/// <see cref="ScaleShiftDistillationOptions.OutputLossWeight"/> × output MSE.</param>
/// <param name="BlockMse">Mean over the schedule's blocks of the MSE between student and teacher block outputs (what
/// the shipped adjustments were trained on), whatever its weight.</param>
/// <param name="OutputMse">MSE between the student's and the teacher's guided U-Net output, whatever its weight.</param>
public sealed record DistillationLosses(double Loss, double BlockMse, double OutputMse);

/// <summary>Block and output MSE of a cached student against the uncached teacher over held-out trajectories
/// (<see cref="ScaleShiftDistillation.Evaluate"/>).</summary>
/// <param name="Trajectories">How many trajectories were averaged.</param>
/// <param name="BlockMse">Mean per-step block MSE (as <see cref="DistillationLosses.BlockMse"/>).</param>
/// <param name="OutputMse">Mean per-step guided-output MSE (as <see cref="DistillationLosses.OutputMse"/>).</param>
public sealed record DistillationEvaluation(int Trajectories, double BlockMse, double OutputMse);

/// <summary>What a distillation job's logs say at its end (<see cref="ScaleShiftDistillation.Summarize"/>).</summary>
/// <param name="Steps">Optimizer steps done, over all runs of the job.</param>
/// <param name="TrainSeconds">Training wall time over all runs of the job (the loop's clock, saving excluded).</param>
/// <param name="Window">How many of the last (and first) steps the figures below average.</param>
/// <param name="InitialBlockMse">Mean block MSE of the first <paramref name="Window"/> steps' training
/// trajectories.</param>
/// <param name="FinalLoss">Mean optimized loss of the last <paramref name="Window"/> steps.</param>
/// <param name="FinalBlockMse">Mean block MSE of the last <paramref name="Window"/> steps' training trajectories
/// (the weights then, not their EMA).</param>
/// <param name="FinalOutputMse">Mean output MSE of the last <paramref name="Window"/> steps.</param>
public sealed record DistillationSummary(long Steps, double TrainSeconds, int Window, double InitialBlockMse, double FinalLoss,
    double FinalBlockMse, double FinalOutputMse);

/// <summary>
/// Trains a <see cref="ScaleShiftAdjustment"/> by student/teacher distillation (Block Caching Sec. 3.4, Fig. 5). Per
/// batch, the student (the U-Net with the block cache and the adjustment) denoises from pure noise; at every step the
/// teacher (the same U-Net, uncached) runs, by default on the student's current sample, the paper's setting
/// (<see cref="DistillationTeacher"/>), and the loss is the mean squared difference of every scheduled block's output,
/// student vs teacher, plus optionally of the guided output (<see cref="ScaleShiftDistillationOptions"/>). By default
/// each step's loss is back-propagated through the student's forward pass of that step into the adjustment; the
/// U-Net's weights are frozen and cached values are constants (no gradient through time), so memory stays that of
/// one forward pass; <see cref="ScaleShiftDistillationOptions.Unroll"/> lets gradients run through several steps. The
/// sample then advances with the student's guided prediction, as at inference.
/// This is its own loop rather than <see cref="DiffusionSampler"/>: each step needs two forward passes, one with
/// gradients.
/// </summary>
public static class ScaleShiftDistillation
{
    /// <summary>The per-step losses of a job, <c>{CheckpointDir}/distill.csv</c>:
    /// <c>step,loss,block_mse,output_mse</c> (lines after the checkpoint are dropped on resume, as in
    /// <c>log.csv</c>).</summary>
    public const string MetricsFile = "distill.csv";

    /// <summary>The job's variant settings, <c>{CheckpointDir}/distillation.json</c>
    /// (<see cref="ScaleShiftDistillationOptions.Describe"/> and the schedule's SHA-256); a resumed job must have the
    /// same.</summary>
    public const string SettingsFile = "distillation.json";

    /// <summary>Trains <paramref name="adjustment"/> in place; the U-Net's parameters are frozen for the job and
    /// unfrozen after it. Resumes from a checkpoint in <see cref="TrainingOptions.CheckpointDir"/>; writes
    /// <see cref="MetricsFile"/> and <see cref="SettingsFile"/> there.</summary>
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
    /// <param name="distillation">What to optimize; <see cref="ScaleShiftDistillationOptions.Default"/> when
    /// null.</param>
    /// <returns>The EMA of the adjustment's weights, which the caller owns and disposes.</returns>
    /// <exception cref="DiffusionCacheException">Invalid settings, or a checkpoint of a job with other
    /// <paramref name="distillation"/> settings.</exception>
    public static ExponentialMovingAverage Train(DiffusionUNet unet, CacheSchedule schedule, SchedulerConfig solver,
        ScaleShiftAdjustment adjustment, DistillationRequests requests, long datasetSize, TrainingOptions options,
        IProgress<TrainingProgress>? progress = null, CancellationToken cancel = default,
        ScaleShiftDistillationOptions? distillation = null)
    {
        ArgumentNullException.ThrowIfNull(unet);
        ArgumentNullException.ThrowIfNull(schedule);
        ArgumentNullException.ThrowIfNull(adjustment);
        ArgumentNullException.ThrowIfNull(requests);
        ArgumentNullException.ThrowIfNull(options);
        distillation ??= ScaleShiftDistillationOptions.Default;
        distillation.Validate();
        bool resuming = TrainingCheckpoint.Exists(options.CheckpointDir);
        RecordSettings(options.CheckpointDir, distillation, schedule, resuming);
        string metrics = Path.Combine(options.CheckpointDir, MetricsFile);
        if (!resuming || !File.Exists(metrics)) File.WriteAllText(metrics, "step,loss,block_mse,output_mse\n");
        DistillationLosses? last = null;
        bool truncated = false;
        // Called synchronously by the loop after each step, so 'last' is that step's trajectory.
        var logging = new SynchronousProgress(p =>
        {
            if (!truncated)
            {
                // A run resumed from an older checkpoint than the last logged step: drop what it will redo.
                var kept = File.ReadLines(metrics).Where((line, i) => i == 0 || StepOf(line) is long s && s < p.Step).ToList();
                File.WriteAllLines(metrics, kept);
                truncated = true;
            }
            File.AppendAllText(metrics, string.Create(CultureInfo.InvariantCulture,
                $"{p.Step},{last!.Loss:G6},{last.BlockMse:G6},{last.OutputMse:G6}\n"));
            progress?.Report(p);
        });

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
                    last = Trajectory(unet, scheduler, policy, request, generator, distillation);
                    return last.Loss;
                }
                finally
                {
                    DisposeRequest(request);
                }
            }, logging, cancel);
        }
        finally
        {
            foreach (var p in frozen) p.requires_grad_(true);
        }
    }

    /// <summary>Block and output MSE of the cached student (with <paramref name="adjustment"/>, or plain caching when
    /// null) against the uncached teacher, over <paramref name="trajectories"/> trajectories whose noise comes from a
    /// generator seeded with <paramref name="seed"/> (pick one no training job uses, so they are held out). No
    /// gradients; the same seed gives the same x_T and conditions to every adjustment compared, so differences are
    /// the adjustment's.</summary>
    /// <param name="unet">The model.</param>
    /// <param name="schedule">The cache schedule (residual mode).</param>
    /// <param name="solver">The scheduler the trajectories step with.</param>
    /// <param name="adjustment">The adjustment to measure; null measures caching without one.</param>
    /// <param name="requests">Makes each batch's sampling request from indices 0..<paramref name="trajectories"/>-1.
    /// </param>
    /// <param name="trajectories">How many trajectories (at least 1).</param>
    /// <param name="batch">Trajectories per batch (at least 1; the last batch may be smaller).</param>
    /// <param name="seed">Seeds the held-out noise.</param>
    /// <param name="teacher">Where the teacher runs: on the student's trajectory (the paper's training target) or
    /// on its own (which also counts the drift the cache accumulates).</param>
    public static DistillationEvaluation Evaluate(DiffusionUNet unet, CacheSchedule schedule, SchedulerConfig solver,
        ScaleShiftAdjustment? adjustment, DistillationRequests requests, int trajectories, int batch, long seed,
        DistillationTeacher teacher = DistillationTeacher.StudentTrajectory)
    {
        ArgumentNullException.ThrowIfNull(unet);
        ArgumentNullException.ThrowIfNull(schedule);
        ArgumentNullException.ThrowIfNull(requests);
        if (trajectories < 1 || batch < 1) throw new DiffusionCacheException("evaluation needs at least one trajectory and a positive batch");
        var options = ScaleShiftDistillationOptions.Default with { Teacher = teacher };
        using var policy = new BlockCachePolicy(unet, schedule, solver.ClassName, BlockCacheMode.Residual, adjustment);
        using var generator = new Generator((ulong)seed);
        bool training = unet.training;
        unet.eval();
        double block = 0, output = 0;
        try
        {
            using var noGrad = no_grad();
            for (int start = 0; start < trajectories; start += batch)
            {
                int n = Math.Min(batch, trajectories - start);
                using var indices = arange(start, start + n, ScalarType.Int64);
                var request = requests(indices, generator) with { Steps = schedule.NumInferenceSteps };
                try
                {
                    using var scheduler = SchedulerFactory.Create(solver);
                    var losses = Trajectory(unet, scheduler, policy, request, generator, options, train: false);
                    block += losses.BlockMse * n;
                    output += losses.OutputMse * n;
                }
                finally
                {
                    DisposeRequest(request);
                }
            }
        }
        finally
        {
            unet.train(training);
        }
        return new DistillationEvaluation(trajectories, block / trajectories, output / trajectories);
    }

    /// <summary>Reads a job's <see cref="MetricsFile"/> and <c>log.csv</c>: steps, training time, and the losses of
    /// the first and last <paramref name="window"/> steps; null when the job has logged no step.</summary>
    /// <param name="checkpointDir">The job's <see cref="TrainingOptions.CheckpointDir"/>.</param>
    /// <param name="window">Steps averaged at each end (at least 1; at most half the job's steps, so that the two
    /// ends do not overlap).</param>
    public static DistillationSummary? Summarize(string checkpointDir, int window = 10)
    {
        if (window < 1) throw new ArgumentOutOfRangeException(nameof(window));
        string metrics = Path.Combine(checkpointDir, MetricsFile);
        if (!File.Exists(metrics)) return null;
        var rows = File.ReadLines(metrics).Skip(1).Select(line => line.Split(','))
            .Where(f => f.Length == 4)
            .Select(f => f.Select(v => double.Parse(v, NumberStyles.Float, CultureInfo.InvariantCulture)).ToArray()).ToList();
        if (rows.Count == 0) return null;
        // A short job gets half its steps at each end, so "first" and "last" never overlap (unless it has one step).
        window = Math.Max(1, Math.Min(window, rows.Count / 2));
        var tail = rows.TakeLast(window).ToList();
        var head = rows.Take(window).ToList();
        double seconds = 0;
        string log = Path.Combine(checkpointDir, "log.csv");
        if (File.Exists(log) && File.ReadLines(log).Skip(1).LastOrDefault() is { } lastLine)
            seconds = double.Parse(lastLine.Split(',')[^1], NumberStyles.Float, CultureInfo.InvariantCulture);
        return new DistillationSummary((long)rows[^1][0], seconds, tail.Count, head.Average(r => r[2]), tail.Average(r => r[1]),
            tail.Average(r => r[2]), tail.Average(r => r[3]));
    }

    /// <summary>One student trajectory with a teacher target per step. With <paramref name="train"/> it accumulates
    /// the adjustment's gradients (call it with gradients enabled); without, it only measures. Returns the per-step
    /// means. <paramref name="observe"/> (tests) sees each step's index, the student's new sample and the teacher's
    /// own (null when the teacher runs on the student's).</summary>
    internal static DistillationLosses Trajectory(DiffusionUNet unet, IScheduler scheduler, BlockCachePolicy policy,
        SamplingRequest request, Generator generator, ScaleShiftDistillationOptions? options = null, bool train = true,
        Action<int, Tensor, Tensor?>? observe = null)
    {
        var o = options ?? ScaleShiftDistillationOptions.Default;
        o.Validate();
        bool unrolled = train && o.Unroll > 1;
        bool ownTeacher = o.Teacher == DistillationTeacher.OwnTrajectory;
        if (unrolled && scheduler is not SchedulerBase)
            throw new DiffusionCacheException($"unroll {o.Unroll} needs a scheduler whose history can be detached; {scheduler.GetType().Name} is not a SchedulerBase");
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
        // The teacher's own trajectory: same x_T, its own solver state, and a copy of the student's noise generator so
        // a stochastic solver draws the same step noise for both (the student's draws advance the job's generator as
        // without a teacher trajectory).
        using var teacherScheduler = ownTeacher ? SchedulerFactory.Create(scheduler.Config) : null;
        teacherScheduler?.SetTimesteps(request.Steps);
        using var teacherGenerator = ownTeacher ? Copy(deviceGenerator ?? generator) : null;
        var teacherNoise = teacherGenerator is null ? null : StepNoise.FromGenerator(teacherGenerator);
        Tensor? teacherX = ownTeacher ? x.clone().DetachFromDisposeScope() : null;
        // The output term and unrolling send gradients back through conv_out (a 3x3 convolution to the latent's few
        // channels), whose oneDNN input gradient is wrong on some CPUs (NativeRuntime): take libtorch's own kernel
        // there. Block losses alone never reach conv_out, so the default keeps its exact former numerics.
        bool nativeBackward = train && (o.OutputLossWeight > 0 || unrolled) && p.device.type == DeviceType.CPU
            && !NativeRuntime.OneDnnConvolutionBackwardIsExact;
        void Backward(Tensor value)
        {
            using var native = nativeBackward ? NativeRuntime.NativeConvolutions() : null;
            value.backward();
        }
        double total = 0, blockTotal = 0, outputTotal = 0;
        Tensor? window = null;   // the open unroll window's summed loss
        policy.KeepGraph = unrolled;
        policy.BeginGeneration(request, timesteps);
        try
        {
            for (int i = 0; i < timesteps.Count; i++)
            {
                var step = new StepInfo(i, timesteps.Count, timesteps[i]);
                policy.BeginStep(step);
                using var scope = NewDisposeScope();
                var t = tensor((float)timesteps[i], ScalarType.Float32, p.device);
                var input = conditioning.Input(scheduler.ScaleModelInput(request.UsesGuidance ? cat([x, x]) : x, i).to(p.dtype), t);
                var teacherInput = teacherX is null ? input
                    : conditioning.Input(teacherScheduler!.ScaleModelInput(request.UsesGuidance ? cat([teacherX, teacherX]) : teacherX, i).to(p.dtype), t);

                using var teacher = new OutputRecorder(blocks, keepGraph: false);
                Tensor teacherPrediction;
                using (no_grad())
                using (unet.Seam.Attach(teacher))
                    teacherPrediction = unet.Forward(teacherInput);
                var teacherGuided = Guided(teacherPrediction.detach(), request);

                using var student = new OutputRecorder(blocks, keepGraph: train);
                Tensor prediction;
                Tensor? differentiableGuided = null;
                using (train ? enable_grad() : no_grad())
                using (unet.Seam.Attach(student))        // outermost: sees what the cache answers
                using (unet.Seam.Attach(policy))
                {
                    prediction = unet.Forward(input);
                    // In float32 whatever the U-Net's compute type: a half-precision sum of squares loses the small
                    // differences the adjustment learns from.
                    var losses = blocks.Select(b => nn.functional.mse_loss(student.Outputs[b].to(ScalarType.Float32),
                        teacher.Outputs[b].to(ScalarType.Float32))).ToList();
                    var blockLoss = stack(losses).mean();
                    // The guided output keeps its graph only where a gradient needs it: the output term, or the
                    // sample an unroll window carries forward.
                    if (train && (o.OutputLossWeight > 0 || unrolled)) differentiableGuided = Guided(prediction, request);
                    var outputLoss = nn.functional.mse_loss(o.OutputLossWeight > 0 && differentiableGuided is not null
                        ? differentiableGuided : Guided(prediction.detach(), request), teacherGuided);
                    // Weight 1 and 0 leave the block loss itself (no multiply, no add): the default is today's loss
                    // bit for bit.
                    Tensor? loss = o.BlockLossWeight == 0 ? null : o.BlockLossWeight == 1 ? blockLoss : blockLoss * o.BlockLossWeight;
                    if (o.OutputLossWeight > 0)
                        loss = loss is null ? outputLoss * o.OutputLossWeight : loss + outputLoss * o.OutputLossWeight;
                    total += loss!.item<float>();
                    blockTotal += blockLoss.item<float>();
                    outputTotal += outputLoss.item<float>();
                    // Steps where every block computes and the sample is a constant carry no gradient.
                    if (train && loss.requires_grad)
                    {
                        if (!unrolled) Backward(loss);
                        else
                        {
                            var sum = window is null ? loss.alias() : window + loss;
                            window?.Dispose();
                            window = sum.DetachFromDisposeScope();
                        }
                    }
                }
                var guided = unrolled ? differentiableGuided! : Guided(prediction.detach(), request);
                var next = scheduler.Step(guided, i, x, noise);
                x.Dispose();
                x = next.DetachFromDisposeScope();
                if (unrolled && ((i + 1) % o.Unroll == 0 || i == timesteps.Count - 1))
                {
                    // The window's end: back-propagate its summed loss, then cut everything that would carry its
                    // (now freed) graph into the next window.
                    if (window is not null) Backward(window);
                    window?.Dispose();
                    window = null;
                    var detached = x.detach().DetachFromDisposeScope();
                    x.Dispose();
                    x = detached;
                    policy.DetachCaches();
                    ((SchedulerBase)scheduler).DetachHistory();
                }
                ((IStepObserver)policy).EndStep(step, x);
                if (teacherX is not null)
                {
                    var teacherNext = teacherScheduler!.Step(teacherGuided, i, teacherX, teacherNoise);
                    teacherX.Dispose();
                    teacherX = teacherNext.DetachFromDisposeScope();
                }
                observe?.Invoke(i, x, teacherX);
            }
        }
        finally
        {
            policy.EndGeneration();
            policy.KeepGraph = false;
            window?.Dispose();
            x.Dispose();
            teacherX?.Dispose();
        }
        return new DistillationLosses(total / timesteps.Count, blockTotal / timesteps.Count, outputTotal / timesteps.Count);
    }

    /// <summary>The prediction the solver steps with, in float32: classifier-free guided when the request uses
    /// guidance.</summary>
    private static Tensor Guided(Tensor prediction, SamplingRequest request) =>
        request.UsesGuidance ? DiffusionSampler.Guide(prediction.to(ScalarType.Float32), request.GuidanceScale)
            : prediction.to(ScalarType.Float32);

    private static Generator Copy(Generator source)
    {
        var copy = new Generator(0, source.device);
        using var state = source.get_state();
        copy.set_state(state);
        return copy;
    }

    private static void DisposeRequest(SamplingRequest request)
    {
        request.Context?.Dispose();
        request.UnconditionalContext?.Dispose();
        request.ClassLabels?.Dispose();
        request.InitialNoise?.Dispose();
    }

    private static long? StepOf(string line) =>
        long.TryParse(line.AsSpan(0, Math.Max(0, line.IndexOf(','))), NumberStyles.Integer, CultureInfo.InvariantCulture, out long s) ? s : null;

    /// <summary>Writes the job's settings, or on resume checks that they are the ones it was started with: a job
    /// continued with another variant would silently mix two trainings. A checkpoint without the file predates the
    /// variants: it was trained with the defaults.</summary>
    private static void RecordSettings(string dir, ScaleShiftDistillationOptions distillation, CacheSchedule schedule, bool resuming)
    {
        string file = Path.Combine(dir, SettingsFile);
        var settings = new Dictionary<string, string>(distillation.Describe(), StringComparer.Ordinal)
        {
            // The same blocks with other compute steps would load the checkpoint without complaint.
            ["schedule_sha256"] = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(schedule.ToJson()))),
        };
        if (resuming)
        {
            var recorded = File.Exists(file)
                ? JsonSerializer.Deserialize<Dictionary<string, string>>(File.ReadAllText(file)) ?? []
                : new Dictionary<string, string>(ScaleShiftDistillationOptions.Default.Describe()) { ["schedule_sha256"] = settings["schedule_sha256"] };
            foreach (var (key, value) in settings)
            {
                if (recorded.GetValueOrDefault(key) != value)
                    throw new DiffusionCacheException($"{dir} holds a scale-shift distillation with {key} = {recorded.GetValueOrDefault(key) ?? "(unset)"}, " +
                        $"this run asks for {value}: use another checkpoint folder, or that job's settings to resume it");
            }
            if (File.Exists(file)) return;
        }
        Directory.CreateDirectory(dir);
        File.WriteAllText(file, JsonSerializer.Serialize(settings, new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }

    /// <summary>An <see cref="IProgress{T}"/> that reports on the caller's thread (<see cref="Progress{T}"/> would
    /// post to the thread pool, after the step's losses have moved on).</summary>
    private sealed class SynchronousProgress(Action<TrainingProgress> report) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => report(value);
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
