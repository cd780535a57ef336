using System.Text.Json;
using DiffusionCache.Caching.BlockCaching;
using DiffusionCache.Cli;
using DiffusionCache.Pipelines;
using DiffusionCache.Tests.Runtime;
using DiffusionCache.Tests.TestSupport;
using DiffusionCache.Training;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Cli.Commands;

/// <summary><c>diffcache train scaleshift</c> under the runtime options: the frozen U-Net in bfloat16, the adjustment
/// in float32 beside it, on a two-step schedule of the embedded model (profiled and built first) to stay fast; and the
/// variants on a schedule over transformers and resnets together. Alone: the variants flip libtorch's oneDNN switch for
/// their backward passes.</summary>
[Collection(LibtorchSwitches.Name)]
public sealed class TrainScaleShiftCommandTests
{
    [Fact]
    public void Distils_an_adjustment_against_a_bf16_unet()
    {
        using var dir = new TempFolder();
        string model = Repository.Path("models", "fashion-ldm");
        Assert.Equal(0, CliApp.Run("profile", "--model", model, "--steps", "2", "--conditions", "1", "--seeds", "1", "--out", dir.File("profile")));
        Assert.Equal(0, CliApp.Run("schedule", "--profile", Path.Combine(dir.File("profile"), "profile.json"), "--delta", "100", "--out", dir.File("schedule.json")));
        Assert.Equal(0, CliApp.Run("train", "scaleshift", "--model", model, "--solver", "ddim", "--denoising-steps", "2", "--schedule", dir.File("schedule.json"),
            "--steps", "1", "--batch", "1", "--checkpoints", dir.File("ck"), "--out", dir.File("adjustment.safetensors"),
            "--dtype", "bf16", "--device", "cpu", "--threads", get_num_threads().ToString(System.Globalization.CultureInfo.InvariantCulture)));
        using var adjustment = ScaleShiftAdjustment.Load(dir.File("adjustment.safetensors"));
        Assert.Equal("bf16", adjustment.Description["unet_dtype"]);
        Assert.All(adjustment.parameters(), p =>
        {
            Assert.Equal(ScalarType.Float32, p.dtype);
            Assert.True(p.isfinite().all().item<bool>());
        });
    }

    [Fact]
    public void Trains_a_variant_on_a_schedule_over_both_kinds_records_it_and_the_adjustment_samples()
    {
        using var dir = new TempFolder();
        string model = Repository.Path("models", "fashion-ldm");
        string schedulePath = dir.File("both.json");
        Assert.Equal(0, CliApp.Run("profile", "--model", model, "--steps", "3", "--conditions", "1", "--seeds", "1",
            "--targets", "transformer2d,resnet2d", "--out", dir.File("profile")));
        Assert.Equal(0, CliApp.Run("schedule", "--profile", Path.Combine(dir.File("profile"), "profile.json"), "--delta", "100", "--out", schedulePath));
        var schedule = CacheSchedule.Load(schedulePath);
        Assert.Same(BlockCachingTargets.TransformersAndResnets, schedule.Targets);
        string[] job = ["train", "scaleshift", "--model", model, "--denoising-steps", "3", "--schedule", schedulePath, "--batch", "2",
            "--checkpoints", dir.File("ck")];
        string[] variant = ["--output-loss", "0.5", "--unroll", "2", "--teacher-trajectory"];
        Assert.Equal(0, CliApp.Run([.. job, .. variant, "--steps", "2", "--eval-mse", "2"]));

        // Without --out, beside the schedule and named by the variant: the shipped adjustment is never overwritten.
        string written = dir.File("both.scaleshift-unroll2-own-teacher.safetensors");   // output loss 0.5 is the tool's default
        using var adjustment = ScaleShiftAdjustment.Load(written);
        adjustment.Validate(schedule);
        var d = adjustment.Description;
        Assert.Equal(("transformer2d,resnet2d", "0.5", "1", "2", "own-trajectory"),
            (d["targets"], d["output_loss_weight"], d["block_loss_weight"], d["unroll"], d["teacher"]));
        Assert.True(double.Parse(d["train_seconds"], System.Globalization.CultureInfo.InvariantCulture) > 0);
        foreach (var key in new[] { "final_block_mse", "final_output_mse", "eval_student_trajectory_plain_block_mse", "eval_student_trajectory_adjusted_block_mse",
            "eval_own_trajectory_plain_output_mse", "eval_own_trajectory_adjusted_output_mse" })
            Assert.True(double.IsFinite(double.Parse(d[key], System.Globalization.CultureInfo.InvariantCulture)), key);
        var summary = JsonSerializer.Deserialize<Dictionary<string, string>>(File.ReadAllText(Path.Combine(dir.File("ck"), "summary.json")))!;
        Assert.Equal(d["final_block_mse"], summary["final_block_mse"]);
        Assert.Equal(Path.GetFullPath(written), summary["adjustment"]);
        Assert.Equal(3, File.ReadAllLines(Path.Combine(dir.File("ck"), ScaleShiftDistillation.MetricsFile)).Length);   // header + 2 steps

        // Another variant cannot resume this job; --eval-only measures the written adjustment without training.
        var error = new StringWriter();
        var stderr = Console.Error;
        Console.SetError(error);
        try
        {
            Assert.NotEqual(0, CliApp.Run([.. job, "--steps", "3"]));
        }
        finally
        {
            Console.SetError(stderr);
        }
        Assert.Contains("unroll", error.ToString());
        Assert.Equal(0, CliApp.Run([.. job, .. variant, "--eval-only", "--eval-mse", "1", "--out", written]));

        // The trained file is usable at inference with its schedule (from the library; see the report for --cache).
        using var pipeline = ClassConditionalPipeline.Load(model);
        using var policy = new BlockCachePolicy(pipeline.UNet, schedule, "DDIMScheduler", adjustment: adjustment);
        using var scheduler = pipeline.CreateScheduler("ddim");
        using var images = pipeline.Generate(scheduler, [0, 1], seed: 3, steps: 3, guidance: 4, policy);
        Assert.True(images.isfinite().all().item<bool>());
        Assert.True(policy.Statistics.TotalReused > 0);
    }
}
