using DiffusionCache.Caching.BlockCaching;
using DiffusionCache.Models.Seam;
using DiffusionCache.Models.UNets;
using DiffusionCache.Pipelines;
using DiffusionCache.Runtime;
using DiffusionCache.Schedulers;
using DiffusionCache.Tests.Runtime;
using DiffusionCache.Tests.TestSupport;
using DiffusionCache.Training;
using TorchSharp;
using static DiffusionCache.Tests.Caching.BlockCaching.BlockCacheFixtures;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Training;

/// <summary>Alone: the variants whose gradients cross conv_out flip libtorch's process-wide oneDNN switch for their
/// backward passes (<see cref="NativeRuntime.NativeConvolutions"/>).</summary>
[Collection(LibtorchSwitches.Name)]
public class ScaleShiftDistillationTests
{
    private const int Steps = 8;

    /// <summary>Aggressive caching: every transformer computes at steps 0 and 4 only.</summary>
    private static IReadOnlyList<int> Rare(int i) => [0, 4];

    private static SamplingRequest Requests(Tensor indices, Generator generator)
    {
        var g = new Generator(21);
        var contexts = randn([4, 6, 16], generator: g);
        var picked = contexts.index_select(0, indices % 4);
        return Request(Steps) with { Batch = (int)indices.shape[0], Context = picked, UnconditionalContext = zeros_like(picked) };
    }

    /// <summary>An adjustment that is not the identity, so that every gradient path is exercised.</summary>
    private static ScaleShiftAdjustment Perturbed(DiffusionUNet unet, CacheSchedule schedule)
    {
        var adjustment = ScaleShiftAdjustment.For(unet, schedule, embeddingDim: 16);
        var g = new Generator(5);
        using (no_grad())
            foreach (var p in adjustment.parameters()) p.copy_(randn(p.shape, generator: g) * 0.05f);
        return adjustment;
    }

    /// <summary>One trajectory's loss and the adjustment's gradients (frozen U-Net, batch of 2).</summary>
    private static (DistillationLosses Losses, Tensor[] Grads) Run(DiffusionUNet unet, CacheSchedule schedule, ScaleShiftAdjustment adjustment,
        ScaleShiftDistillationOptions? options, SchedulerConfig? solver = null, Action<int, Tensor, Tensor?>? observe = null)
    {
        foreach (var p in unet.parameters()) p.requires_grad_(false);
        try
        {
            using var policy = new BlockCachePolicy(unet, schedule, (solver ?? SchedulerConfig()).ClassName, adjustment: adjustment);
            using var scheduler = SchedulerFactory.Create(solver ?? SchedulerConfig());
            using var indices = arange(2L);
            var request = Requests(indices, new Generator(1)) with { Steps = schedule.NumInferenceSteps };
            using var g = new Generator(77);
            using var grad = enable_grad();
            adjustment.zero_grad();
            var losses = ScaleShiftDistillation.Trajectory(unet, scheduler, policy, request, g, options, observe: observe);
            var grads = adjustment.parameters().Select(p => p.grad is null ? zeros_like(p) : p.grad.clone()).ToArray();
            adjustment.zero_grad();
            return (losses, grads);
        }
        finally
        {
            foreach (var p in unet.parameters()) p.requires_grad_(true);
        }
    }

    /// <summary>The distillation as it was before the variants (one backward pass per step, cached values and sample
    /// constants, block MSE only), kept verbatim as the definition the defaults must reproduce bit for bit; with an
    /// output weight it adds the guided-output MSE, the definition of <c>--output-loss</c>.</summary>
    private static (double Loss, Tensor[] Grads) Reference(DiffusionUNet unet, CacheSchedule schedule, ScaleShiftAdjustment adjustment,
        double blockWeight = 1, double outputWeight = 0)
    {
        foreach (var p in unet.parameters()) p.requires_grad_(false);
        using var policy = new BlockCachePolicy(unet, schedule, Solver, adjustment: adjustment);
        using var scheduler = SchedulerFactory.Create(SchedulerConfig());
        using var indices = arange(2L);
        var request = Requests(indices, new Generator(1)) with { Steps = schedule.NumInferenceSteps };
        using var generator = new Generator(77);
        using var gradMode = enable_grad();
        adjustment.zero_grad();

        scheduler.SetTimesteps(request.Steps);
        var timesteps = scheduler.Timesteps;
        var blocks = policy.Schedule.Blocks.ToHashSet(StringComparer.Ordinal);
        using var generation = NewDisposeScope();
        var p0 = unet.parameters().First();
        var x = (randn([request.Batch, unet.InChannels, request.Height, request.Width], ScalarType.Float32, generator.device, generator: generator)
            .to(p0.device) * scheduler.InitNoiseSigma).DetachFromDisposeScope();
        var conditioning = DiffusionSampler.Conditioning(request, p0.dtype, p0.device);
        var noise = StepNoise.FromGenerator(generator);
        double total = 0;
        policy.BeginGeneration(request, timesteps);
        for (int i = 0; i < timesteps.Count; i++)
        {
            var step = new StepInfo(i, timesteps.Count, timesteps[i]);
            policy.BeginStep(step);
            using var scope = NewDisposeScope();
            var input = conditioning.Input(scheduler.ScaleModelInput(request.UsesGuidance ? cat([x, x]) : x, i).to(p0.dtype),
                tensor((float)timesteps[i], ScalarType.Float32, p0.device));
            using var teacher = new Recorder(blocks, keepGraph: false);
            Tensor teacherPrediction;
            using (no_grad())
            using (unet.Seam.Attach(teacher))
                teacherPrediction = unet.Forward(input);
            using var student = new Recorder(blocks, keepGraph: true);
            Tensor prediction;
            using (enable_grad())
            using (unet.Seam.Attach(student))
            using (unet.Seam.Attach(policy))
            {
                prediction = unet.Forward(input);
                var losses = blocks.Select(b => nn.functional.mse_loss(student.Outputs[b].to(ScalarType.Float32),
                    teacher.Outputs[b].to(ScalarType.Float32))).ToList();
                var loss = stack(losses).mean();
                if (outputWeight > 0)
                {
                    var outputLoss = nn.functional.mse_loss(DiffusionSampler.Guide(prediction.to(ScalarType.Float32), request.GuidanceScale),
                        DiffusionSampler.Guide(teacherPrediction.to(ScalarType.Float32), request.GuidanceScale));
                    loss = loss * blockWeight + outputLoss * outputWeight;
                }
                // As the implementation: the output term's gradient crosses conv_out, whose oneDNN backward pass is
                // wrong on some CPUs.
                if (loss.requires_grad)
                    using (outputWeight > 0 ? NativeRuntime.NativeConvolutions() : null)
                        loss.backward();
                total += loss.item<float>();
            }
            var guided = request.UsesGuidance ? DiffusionSampler.Guide(prediction.detach().to(ScalarType.Float32), request.GuidanceScale)
                : prediction.detach().to(ScalarType.Float32);
            var next = scheduler.Step(guided, i, x, noise);
            x.Dispose();
            x = next.DetachFromDisposeScope();
        }
        policy.EndGeneration();
        x.Dispose();
        var grads = adjustment.parameters().Select(p => (p.grad is null ? zeros_like(p) : p.grad.clone()).DetachFromDisposeScope()).ToArray();
        adjustment.zero_grad();
        foreach (var p in unet.parameters()) p.requires_grad_(true);
        return (total / timesteps.Count, grads);
    }

    private sealed class Recorder(IReadOnlySet<string> wanted, bool keepGraph) : IBlockHook, IDisposable
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
        }
    }

    private static bool AllBitwiseEqual(Tensor[] a, Tensor[] b) => a.Length == b.Length && a.Zip(b).All(p => BitwiseEqual(p.First, p.Second));

    // The absolute tolerance grows with each tensor's scale: where oneDNN's convolution backward is exact the
    // implementation uses it and the reference libtorch's native kernel, whose roundings differ by a few ulp (seen:
    // 3.6e-9 on one gradient element near 0 of a tensor scaled 2e-3), far below the 30-75 % of a wrong kernel.
    private static bool AllClose(Tensor[] a, Tensor[] b, double rtol, double atol) =>
        a.Length == b.Length && a.Zip(b).All(p => p.First.allclose(p.Second, rtol, atol + 1e-5 * p.Second.abs().max().item<float>()));

    private static double Dot(Tensor[] a, Tensor[] b) => a.Zip(b).Sum(p => (p.First.to(ScalarType.Float64) * p.Second.to(ScalarType.Float64)).sum().item<double>());

    [Fact]
    public void Distillation_brings_the_cached_student_closer_to_the_teacher_and_leaves_the_unet_alone()
    {
        using var unet = Model();
        var schedule = Schedule(unet, Steps, Rare);
        using var adjustment = ScaleShiftAdjustment.For(unet, schedule, embeddingDim: 16);
        var before = unet.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        var config = SchedulerConfig();
        DistillationEvaluation Held(ScaleShiftAdjustment? a) =>
            ScaleShiftDistillation.Evaluate(unet, schedule, config, a, Requests, trajectories: 4, batch: 2, seed: 1234);
        double initial = Run(unet, schedule, adjustment, null).Losses.Loss;
        var plain = Held(null);
        Assert.Equal(plain, Held(adjustment));   // the zero-initialized adjustment is the identity
        Assert.Equal(plain, Held(null));         // same held-out trajectories every time
        using var dir = new TempFolder();
        var options = new TrainingOptions
        {
            CheckpointDir = dir.File("ck"), TotalSteps = 30, BatchSize = 4, LearningRate = 1e-2, WarmupSteps = 1, EmaDecay = 0.5,
            CheckpointEvery = 100,
        };
        using (var ema = ScaleShiftDistillation.Train(unet, schedule, config, adjustment, Requests, 8, options))
            ema.CopyTo(adjustment);
        double trained = Run(unet, schedule, adjustment, null).Losses.Loss;
        var adjusted = Held(adjustment);

        Assert.True(initial > 0);
        Assert.True(trained < 0.9 * initial, $"block loss {initial:G4} -> {trained:G4}");
        Assert.True(adjusted.BlockMse < 0.9 * plain.BlockMse, $"held-out block MSE {plain.BlockMse:G4} -> {adjusted.BlockMse:G4}");
        Assert.Equal(4, adjusted.Trajectories);
        Assert.All(unet.parameters(), p => Assert.True(p.requires_grad));   // frozen only while training
        foreach (var (name, value) in unet.state_dict()) Assert.True(value.equal(before[name]).all().item<bool>(), name);
        Assert.Contains(adjustment.parameters(), p => p.abs().sum().item<float>() > 0);
    }

    [Fact]
    public void The_default_options_and_unroll_1_are_the_original_distillation_bit_for_bit()
    {
        using var unet = Model();
        var schedule = Schedule(unet, Steps, Rare);
        using var adjustment = Perturbed(unet, schedule);
        var (loss, grads) = Reference(unet, schedule, adjustment);
        Assert.Contains(grads, g => g.abs().sum().item<float>() > 0);
        foreach (var options in new ScaleShiftDistillationOptions?[] { null, ScaleShiftDistillationOptions.Default, new() { Unroll = 1, OutputLossWeight = 0 } })
        {
            var run = Run(unet, schedule, adjustment, options);
            Assert.Equal(loss, run.Losses.Loss);
            Assert.Equal(loss, run.Losses.BlockMse);
            Assert.True(AllBitwiseEqual(grads, run.Grads), $"gradients differ from the original with {options}");
        }
    }

    [Fact]
    public void The_output_loss_is_the_mse_of_the_guided_predictions_and_block_weight_0_drops_the_blocks()
    {
        using var unet = Model();
        var schedule = Schedule(unet, Steps, Rare);
        using var adjustment = Perturbed(unet, schedule);
        var (outputOnly, outputGrads) = Reference(unet, schedule, adjustment, blockWeight: 0, outputWeight: 1);
        var (mixed, mixedGrads) = Reference(unet, schedule, adjustment, blockWeight: 1, outputWeight: 0.5);

        var run = Run(unet, schedule, adjustment, new() { BlockLossWeight = 0, OutputLossWeight = 1 });
        Assert.Equal(outputOnly, run.Losses.Loss, 1e-6);
        Assert.Equal(outputOnly, run.Losses.OutputMse, 1e-6);
        Assert.NotEqual(run.Losses.BlockMse, run.Losses.Loss, 1e-6);
        Assert.True(AllClose(outputGrads, run.Grads, 1e-4, 1e-9), "output-only gradients");
        var both = Run(unet, schedule, adjustment, new() { OutputLossWeight = 0.5 });
        Assert.Equal(mixed, both.Losses.Loss, 1e-6);
        Assert.Equal(both.Losses.BlockMse + 0.5 * both.Losses.OutputMse, both.Losses.Loss, 1e-6);
        Assert.True(AllClose(mixedGrads, both.Grads, 1e-4, 1e-9), "block + 0.5 output gradients");
        // The output MSE is measured (not optimized) by the default too.
        Assert.Equal(outputOnly, Run(unet, schedule, adjustment, null).Losses.OutputMse, 1e-6);
        Assert.Throws<DiffusionCacheException>(() => new ScaleShiftDistillationOptions { BlockLossWeight = 0 }.Validate());
        Assert.Throws<DiffusionCacheException>(() => new ScaleShiftDistillationOptions { OutputLossWeight = -1 }.Validate());
        Assert.Throws<DiffusionCacheException>(() => new ScaleShiftDistillationOptions { Unroll = 0 }.Validate());
    }

    [Fact]
    public void Unrolling_keeps_the_losses_and_follows_the_true_gradient_through_time()
    {
        using var unet = Model();
        var schedule = Schedule(unet, Steps, Rare);
        using var adjustment = Perturbed(unet, schedule);
        // With the teacher on its own trajectory the targets do not depend on the adjustment, so the loss is a plain
        // function of the weights and full unrolling must give its derivative; one step at a time must not.
        var own = new ScaleShiftDistillationOptions { Teacher = DistillationTeacher.OwnTrajectory, OutputLossWeight = 1 };
        var single = Run(unet, schedule, adjustment, own);
        var partial = Run(unet, schedule, adjustment, own with { Unroll = 3 });
        var full = Run(unet, schedule, adjustment, own with { Unroll = Steps });
        Assert.Equal(single.Losses, partial.Losses);   // unrolling changes gradients, not values
        Assert.Equal(single.Losses, full.Losses);
        Assert.False(AllClose(single.Grads, full.Grads, 1e-2, 1e-9));
        Assert.False(AllClose(partial.Grads, full.Grads, 1e-2, 1e-9));

        // Central difference of the summed loss along the full gradient's direction.
        var direction = full.Grads.Select(g => g / Math.Sqrt(Dot(full.Grads, full.Grads))).ToArray();
        double Loss(double h)
        {
            var saved = adjustment.parameters().Select(p => p.detach().clone()).ToArray();
            using (no_grad())
                foreach (var (p, d) in adjustment.parameters().Zip(direction)) p.add_(d * h);
            double value = Run(unet, schedule, adjustment, own).Losses.Loss * Steps;
            using (no_grad())
                foreach (var (p, s) in adjustment.parameters().Zip(saved)) p.copy_(s);
            return value;
        }
        const double h = 2e-3;
        double numeric = (Loss(h) - Loss(-h)) / (2 * h);
        double fullSlope = Dot(full.Grads, direction), singleSlope = Dot(single.Grads, direction);
        // Agreement is ~2e-5 here; leaving the cached changes off the graph (only the sample carried) is ~1e-2 off.
        Assert.True(Math.Abs(fullSlope - numeric) < 1e-3 * Math.Abs(numeric),
            $"unrolled gradient {fullSlope:G4} vs finite difference {numeric:G4} (one step at a time: {singleSlope:G4})");
        Assert.True(Math.Abs(singleSlope - numeric) > 0.1 * Math.Abs(numeric),
            $"one step at a time {singleSlope:G4} should miss the finite difference {numeric:G4}");
    }

    [Fact]
    public void Unrolling_a_multistep_solver_detaches_its_history_at_window_ends()
    {
        using var unet = Model();
        var dpm = Solvers.For("dpm++", SchedulerConfig());
        var schedule = Schedule(unet, Steps, Rare) with { Solver = dpm.ClassName };
        using var adjustment = Perturbed(unet, schedule);
        // DPM-Solver++ (2nd order) keeps the previous prediction: without the cut, the second window's backward pass
        // would run into the first window's freed graph.
        var run = Run(unet, schedule, adjustment, new() { Unroll = 3 }, dpm);
        Assert.All(run.Grads, g => Assert.True(g.isfinite().all().item<bool>()));
        Assert.Contains(run.Grads, g => g.abs().sum().item<float>() > 0);
        Assert.Equal(Run(unet, schedule, adjustment, null, dpm).Losses, run.Losses);
    }

    [Fact]
    public void The_own_trajectory_teacher_samples_uncached_from_the_same_noise_and_the_default_teacher_has_none()
    {
        using var unet = Model();
        var schedule = Schedule(unet, Steps, Rare);
        using var adjustment = Perturbed(unet, schedule);
        Tensor? studentOwn = null, teacherOwn = null, studentDefault = null;
        var own = Run(unet, schedule, adjustment, new() { Teacher = DistillationTeacher.OwnTrajectory }, observe: (i, x, teacher) =>
        {
            if (i != Steps - 1) return;
            studentOwn = x.detach().clone().DetachFromDisposeScope();
            teacherOwn = teacher!.clone().DetachFromDisposeScope();
        });
        var paper = Run(unet, schedule, adjustment, null, observe: (i, x, teacher) =>
        {
            Assert.Null(teacher);
            if (i == Steps - 1) studentDefault = x.clone().DetachFromDisposeScope();
        });
        Assert.True(BitwiseEqual(studentDefault!, studentOwn!));   // the student's trajectory is the same either way
        Assert.NotEqual(paper.Losses.BlockMse, own.Losses.BlockMse);

        // The teacher's is uncached sampling from the student's x_T (drawn first from the job's generator).
        using var indices = arange(2L);
        var request = Requests(indices, new Generator(1)) with { InitialNoise = randn([2, unet.InChannels, 8, 8], generator: new Generator(77)) };
        using var s = Scheduler();
        using var uncached = DiffusionSampler.Sample(unet, s, request);
        Assert.True(teacherOwn!.allclose(uncached, rtol: 0, atol: 1e-6), $"max diff {(teacherOwn - uncached).abs().max().item<float>()}");
        Assert.False(studentOwn!.allclose(uncached, rtol: 0, atol: 1e-4));
    }

    [Fact]
    public void A_stochastic_solver_gives_the_own_trajectory_teacher_the_students_step_noise()
    {
        using var unet = Model();
        var ddpm = Solvers.For("ddpm", SchedulerConfig());
        // Every block computes at every step: the student is the teacher, so with the same step noise their
        // trajectories and outputs coincide exactly.
        var schedule = Schedule(unet, Steps, _ => [.. Enumerable.Range(0, Steps)]) with { Solver = ddpm.ClassName };
        using var adjustment = Perturbed(unet, schedule);
        Tensor? student = null, teacher = null;
        var run = Run(unet, schedule, adjustment, new() { Teacher = DistillationTeacher.OwnTrajectory, OutputLossWeight = 1 }, ddpm, (i, x, t) =>
        {
            if (i != Steps - 1) return;
            student = x.clone().DetachFromDisposeScope();
            teacher = t!.clone().DetachFromDisposeScope();
        });
        Assert.True(BitwiseEqual(student!, teacher!));
        Assert.Equal(new DistillationLosses(0, 0, 0), run.Losses);
    }

    [Fact]
    public void Both_kinds_of_blocks_are_distilled_together()
    {
        using var unet = Model();
        var schedule = Schedule(unet, Steps, Rare, BlockCachingTargets.TransformersAndResnets);
        using var adjustment = Perturbed(unet, schedule);
        Assert.Equal(11 + 17, adjustment.Blocks.Count);
        var run = Run(unet, schedule, adjustment, null);
        Assert.True(run.Losses.BlockMse > 0);
        // Every block's layer (weight and bias, in block order) gets a gradient: resnets and transformers alike.
        for (int b = 0; b < adjustment.Blocks.Count; b++)
            Assert.True(run.Grads[2 * b].abs().sum().item<float>() > 0, adjustment.Blocks[b].Path);
    }

    [Fact]
    public void A_job_logs_its_losses_and_settings_and_refuses_to_resume_with_other_settings()
    {
        using var unet = Model();
        var schedule = Schedule(unet, 4, _ => [0]);
        using var adjustment = ScaleShiftAdjustment.For(unet, schedule, embeddingDim: 16);
        using var dir = new TempFolder();
        var variant = new ScaleShiftDistillationOptions { OutputLossWeight = 0.5, Unroll = 2 };
        TrainingOptions Options(long steps) => new()
        {
            CheckpointDir = dir.File("ck"), TotalSteps = steps, BatchSize = 2, LearningRate = 1e-2, WarmupSteps = 1, EmaDecay = 0.5,
            CheckpointEvery = 1,
        };
        SamplingRequest Short(Tensor indices, Generator generator) => Requests(indices, generator) with { Steps = 4 };
        using (ScaleShiftDistillation.Train(unet, schedule, SchedulerConfig(), adjustment, Short, 4, Options(2), distillation: variant)) { }
        var e = Assert.Throws<DiffusionCacheException>(() =>
            ScaleShiftDistillation.Train(unet, schedule, SchedulerConfig(), adjustment, Short, 4, Options(3)));
        Assert.Contains("output_loss_weight", e.Message);
        var other = schedule with { ComputeSteps = [.. schedule.ComputeSteps.Select(_ => (IReadOnlyList<int>)[0, 2])] };
        e = Assert.Throws<DiffusionCacheException>(() =>
            ScaleShiftDistillation.Train(unet, other, SchedulerConfig(), adjustment, Short, 4, Options(3), distillation: variant));
        Assert.Contains("schedule_sha256", e.Message);
        using (ScaleShiftDistillation.Train(unet, schedule, SchedulerConfig(), adjustment, Short, 4, Options(3), distillation: variant)) { }

        var lines = File.ReadAllLines(Path.Combine(dir.File("ck"), ScaleShiftDistillation.MetricsFile));
        Assert.Equal(["step,loss,block_mse,output_mse", "1,", "2,", "3,"], lines.Select((l, i) => i == 0 ? l : l[..(l.IndexOf(',') + 1)]));
        var settings = File.ReadAllText(Path.Combine(dir.File("ck"), ScaleShiftDistillation.SettingsFile));
        Assert.Contains("\"unroll\": \"2\"", settings);
        Assert.Contains("\"output_loss_weight\": \"0.5\"", settings);
        var summary = ScaleShiftDistillation.Summarize(dir.File("ck"))!;
        Assert.Equal(3, summary.Steps);
        Assert.Equal(1, summary.Window);   // half of 3 steps, so the first and the last do not overlap
        Assert.True(summary.TrainSeconds > 0);
        Assert.True(summary.FinalBlockMse > 0 && summary.FinalOutputMse > 0);
        Assert.Equal(summary.FinalBlockMse + 0.5 * summary.FinalOutputMse, summary.FinalLoss, 1e-4);
        Assert.Equal("out0.5-unroll2", variant.Tag);
        Assert.Equal("", ScaleShiftDistillationOptions.Default.Tag);
        // Against the recommended recipe (the tool's default), the paper's loss alone is the variant.
        Assert.Equal("unroll2", variant.TagAgainst(ScaleShiftDistillationOptions.Recommended));
        Assert.Equal("out0", ScaleShiftDistillationOptions.Default.TagAgainst(ScaleShiftDistillationOptions.Recommended));
        Assert.Equal("out0-student-teacher", ScaleShiftDistillationOptions.Default.TagAgainst(
            ScaleShiftDistillationOptions.Recommended with { Teacher = DistillationTeacher.OwnTrajectory }));
    }
}
