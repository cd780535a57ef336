using DiffusionCache.Models.UNets;
using DiffusionCache.Schedulers;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Pipelines;

/// <summary>
/// The one denoising loop every model family goes through: seeded noise, optional classifier-free guidance, the
/// scheduler's steps, per-step observers, cancellation between steps. Each step runs in its own dispose scope, so
/// memory stays flat however many steps run.
/// </summary>
public static class DiffusionSampler
{
    /// <summary>Samples <paramref name="request"/>: sets the scheduler's timesteps to <c>request.Steps</c>, starts
    /// from <see cref="SamplingRequest.InitialNoise"/> or seeded noise times <see cref="IScheduler.InitNoiseSigma"/>,
    /// and steps through every timestep (U-Net in its own dtype, scheduler in float32), telling the observers. A
    /// generator on the U-Net's device seeded with <see cref="SamplingRequest.Seed"/> draws the initial noise and the
    /// noise of stochastic steps. The scheduler is reset afterwards, also on failure.</summary>
    /// <param name="unet">The denoiser; its first parameter gives the device and compute dtype.</param>
    /// <param name="scheduler">The solver; any state it had is dropped.</param>
    /// <param name="request">What to sample; its tensors stay the caller's.</param>
    /// <param name="observers">Told about the generation and each step, in list order; null: none.</param>
    /// <param name="cancel">Checked before each step.</param>
    /// <returns>The final latents [Batch, in_channels, Height, Width], float32 on the U-Net's device; the caller
    /// disposes them.</returns>
    /// <exception cref="DiffusionCacheException">An invalid request (steps, sizes, guidance scale, missing or
    /// mismatched conditioning) or initial noise of the wrong shape.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancel"/> was signalled.</exception>
    public static Tensor Sample(DiffusionUNet unet, IScheduler scheduler, SamplingRequest request,
        IReadOnlyList<IStepObserver>? observers = null, CancellationToken cancel = default)
    {
        Validate(unet, request);
        observers ??= [];
        var p = unet.parameters().First();
        var (device, dtype) = (p.device, p.dtype);

        scheduler.SetTimesteps(request.Steps);
        var timesteps = scheduler.Timesteps;
        using var generator = new Generator((ulong)request.Seed, device);
        // Everything but the result lives in this generation's scope; each step has its own scope inside it.
        using var generation = NewDisposeScope();
        var shape = new long[] { request.Batch, unet.InChannels, request.Height, request.Width };
        var noise = request.InitialNoise?.to(ScalarType.Float32, device) ?? randn(shape, ScalarType.Float32, device, generator: generator);
        if (!noise.shape.SequenceEqual(shape))
            throw new DiffusionCacheException($"initial noise is [{string.Join(",", noise.shape)}], expected [{string.Join(",", shape)}]");
        var x = (noise * scheduler.InitNoiseSigma).DetachFromDisposeScope();

        var conditioning = Conditioning(request, dtype, device);
        var stepNoise = StepNoise.FromGenerator(generator);

        try
        {
            foreach (var o in observers) o.BeginGeneration(request, timesteps);
            using var noGrad = no_grad();
            for (int i = 0; i < timesteps.Count; i++)
            {
                cancel.ThrowIfCancellationRequested();
                var step = new StepInfo(i, timesteps.Count, timesteps[i]);
                foreach (var o in observers) o.BeginStep(step);
                using (var scope = NewDisposeScope())
                {
                    var modelInput = scheduler.ScaleModelInput(request.UsesGuidance ? cat([x, x]) : x, i);
                    var t = tensor((float)timesteps[i], ScalarType.Float32, device);
                    var output = unet.Forward(conditioning.Input(modelInput.to(dtype), t)).to(ScalarType.Float32);
                    foreach (var o in observers) o.OnModelOutput(step, modelInput, output);
                    var prediction = request.UsesGuidance ? Guide(output, request.GuidanceScale) : output;
                    foreach (var o in observers) o.OnPrediction(step, prediction);
                    var next = scheduler.Step(prediction, i, x, stepNoise);
                    x.Dispose();
                    x = next.DetachFromDisposeScope();
                }
                foreach (var o in observers) o.EndStep(step, x);
            }
        }
        catch
        {
            x.Dispose();
            throw;
        }
        finally
        {
            foreach (var o in observers) o.EndGeneration();
            scheduler.Reset();
        }
        return x;
    }

    /// <summary>The U-Net's conditioning for every step of <paramref name="request"/>, prepared once: with guidance
    /// the [uncond; cond] batch (uncond first, as diffusers does) of contexts and SDXL's text embeddings and time ids,
    /// and the labels twice; in the caller's dispose scope.</summary>
    public static UNetConditioning Conditioning(SamplingRequest request, ScalarType dtype, Device device)
    {
        ArgumentNullException.ThrowIfNull(request);
        bool guided = request.UsesGuidance;
        Tensor? Pair(Tensor? uncond, Tensor? cond, ScalarType type) => cond is null ? null
            : (guided ? cat([uncond ?? cond, cond]) : cond).to(type, device);
        var labels = request.ClassLabels is null ? null
            : (guided ? cat([request.ClassLabels, request.ClassLabels]) : request.ClassLabels).to(ScalarType.Int64, device);
        // Time ids stay float32: they are embedded like timesteps, in float32.
        return new UNetConditioning(Pair(request.UnconditionalContext, request.Context, dtype), labels,
            Pair(request.UnconditionalTextEmbeds, request.TextEmbeds, dtype), Pair(request.UnconditionalTimeIds, request.TimeIds, ScalarType.Float32));
    }

    /// <summary>Classifier-free guidance: u + g (c - u) on the [uncond; cond] batch.</summary>
    public static Tensor Guide(Tensor output, double scale)
    {
        var halves = output.chunk(2, 0);
        return halves[0] + scale * (halves[1] - halves[0]);
    }

    private static void Validate(DiffusionUNet unet, SamplingRequest r)
    {
        if (r.Steps < 1) throw new DiffusionCacheException($"steps must be at least 1, got {r.Steps}");
        if (r.Batch < 1) throw new DiffusionCacheException($"batch must be at least 1, got {r.Batch}");
        if (r.Height < 1 || r.Width < 1) throw new DiffusionCacheException("sample height and width must be positive");
        if (double.IsNaN(r.GuidanceScale) || double.IsInfinity(r.GuidanceScale) || r.GuidanceScale < 0)
            throw new DiffusionCacheException($"guidance scale must be a finite number >= 0, got {r.GuidanceScale}");
        if (unet.ContextDim is not null && r.Context is null)
            throw new DiffusionCacheException($"{unet.ClassName} needs a context (text or label embeddings)");
        if (r.Context is not null && r.Context.shape[0] != r.Batch)
            throw new DiffusionCacheException($"context batch {r.Context.shape[0]} differs from batch {r.Batch}");
        if (r.UsesGuidance && (r.Context is null || !r.UnconditionalContext!.shape.SequenceEqual(r.Context.shape)))
            throw new DiffusionCacheException("classifier-free guidance needs an unconditional context shaped like the context");
        if ((r.TextEmbeds is null) != (r.TimeIds is null) || (r.UsesGuidance && r.TextEmbeds is not null &&
                (r.UnconditionalTextEmbeds is null || r.UnconditionalTimeIds is null)))
            throw new DiffusionCacheException("text embeddings and time ids go together, with unconditional ones under guidance");
        if (unet.NumClassEmbeds is not null && r.ClassLabels is null)
            throw new DiffusionCacheException($"{unet.ClassName} has a class embedding: class labels are required");
    }
}
