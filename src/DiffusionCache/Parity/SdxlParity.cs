using System.Text.Json;
using DiffusionCache.Caching;
using DiffusionCache.Formats.Safetensors;
using DiffusionCache.Models.Loading;
using DiffusionCache.Pipelines;
using DiffusionCache.Schedulers;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Parity;

/// <summary>
/// Golden kind <c>sdxl</c> (shared/golden/sdxl/README.md): the SDXL U-Net with its added conditioning, both text
/// encoders, SDXL prompt encoding and time ids, a whole SDXL pipeline call, and Stable Diffusion single-file
/// checkpoints.
/// </summary>
public sealed class SdxlParity : CaseParitySuite
{
    /// <inheritdoc />
    public override string Kind => "sdxl";

    /// <summary>Runs one case by its <c>type</c>: <c>unet</c>, <c>text-encoder</c>, <c>encode-prompt</c>,
    /// <c>pipeline</c>, or <c>single-file-keys</c> / <c>single-file-unet</c> (through <see cref="SingleFileParity"/>).
    /// A structural problem or an unknown type is a failed result with the reason as its detail.</summary>
    /// <param name="folder">The golden folder the case belongs to.</param>
    /// <param name="case">One element of the folder's <see cref="GoldenFolder.Cases"/>.</param>
    public override ParityResult RunCase(GoldenFolder folder, JsonElement @case) => CaseType(@case) switch
    {
        "unet" => RunTensorCase(folder, @case, IsInput(@case), (file, check, covered) => RunUNet(folder, @case, file, check, covered)),
        "text-encoder" => RunTensorCase(folder, @case, IsInput(@case), (file, check, covered) => RunTextEncoder(folder, @case, file, check, covered)),
        "encode-prompt" => RunTensorCase(folder, @case, IsInput(@case), (file, check, covered) => RunEncodePrompt(folder, @case, file, check, covered)),
        "pipeline" => RunTensorCase(folder, @case, IsInput(@case), (file, check, covered) => RunPipeline(folder, @case, file, check, covered)),
        "single-file-keys" => SingleFileParity.RunKeys(folder, @case),
        "single-file-unet" => SingleFileParity.RunUNet(folder, @case),
        var other => new ParityResult(CaseId(@case), double.PositiveInfinity, false, $"unknown case type '{other}'"),
    };

    private static Func<string, bool> IsInput(JsonElement @case)
    {
        var inputs = @case.GetProperty("inputs").EnumerateArray().Select(e => e.GetString()!).ToHashSet(StringComparer.Ordinal);
        return inputs.Contains;
    }

    private static string[] Expected(JsonElement @case) => @case.GetProperty("expected").EnumerateArray().Select(e => e.GetString()!).ToArray();

    private static void RunUNet(GoldenFolder folder, JsonElement @case, SafetensorsFile file, CaseCheck check, HashSet<string> covered)
    {
        var dtype = @case.GetProperty("compute_dtype").GetString() switch
        {
            "float32" => ScalarType.Float32,
            "bfloat16" => ScalarType.BFloat16,
            var other => throw new CaseProblem($"unknown compute_dtype '{other}'"),
        };
        using var model = UNetLoader.Load(folder.Resolve(@case.GetProperty("model_path").GetString()!), dtype: dtype);
        var expected = Expected(@case);
        UNetParity.CheckForward(model, file, expected, check, dtype);
        covered.UnionWith(expected);
    }

    private static void RunTextEncoder(GoldenFolder folder, JsonElement @case, SafetensorsFile file, CaseCheck check, HashSet<string> covered)
    {
        using var model = TextEncoderLoader.Load(folder.Resolve(@case.GetProperty("model_path").GetString()!));
        string cls = @case.GetProperty("model_class").GetString()!;
        if (model.ClassName != cls) throw new CaseProblem($"loaded a {model.ClassName}, the case says {cls}");
        var tokenizer = Models.Text.ClipTokenizer.Load(folder.Resolve(@case.GetProperty("tokenizer_path").GetString()!));
        var prompts = @case.GetProperty("prompts").EnumerateArray().Select(e => e.GetString()!).ToArray();
        var expectedIds = file.Load("input_ids");
        var ids = stack(prompts.Select(p => tensor(tokenizer.Encode(p).Ids.ToArray())).ToArray());
        check.Exact("input_ids", ids.flatten().data<long>().ToArray(), expectedIds.flatten().data<long>().ToArray());

        using var output = model.Forward(ids, outputHiddenStates: true);
        check.Exact("pooled_index", model.PooledIndex(ids).data<long>().ToArray(),
            @case.GetProperty("pooled_index").EnumerateArray().Select(e => e.GetInt64()).ToArray());
        var actual = new Dictionary<string, Tensor>(StringComparer.Ordinal)
        {
            ["last_hidden_state"] = output.LastHiddenState,
            ["penultimate_hidden_state"] = output.HiddenStates![^2],
            ["pooler_output"] = output.PooledOutput,
            ["pooled_output"] = output.PooledOutput,
        };
        if (output.TextEmbeds is not null) actual["text_embeds"] = output.TextEmbeds;
        for (int k = 0; k < output.HiddenStates.Count; k++) actual[$"hidden_states.{k}"] = output.HiddenStates[k];
        Compare(@case, file, check, covered, actual);
    }

    private static void RunEncodePrompt(GoldenFolder folder, JsonElement @case, SafetensorsFile file, CaseCheck check, HashSet<string> covered)
    {
        using var pipeline = StableDiffusionXLPipeline.Load(folder.Resolve(@case.GetProperty("model_path").GetString()!));
        var call = Call(@case.GetProperty("call"), pipeline);
        var p = pipeline;
        p.ForceZerosForEmptyPrompt = @case.GetProperty("force_zeros_for_empty_prompt").GetBoolean();
        using var c = p.Encode(call);
        var request = p.Request(call);
        try
        {
            var unet = DiffusionSampler.Conditioning(request, ScalarType.Float32, CPU);
            var actual = new Dictionary<string, Tensor>(StringComparer.Ordinal)
            {
                ["prompt_embeds"] = c.PromptEmbeds,
                ["pooled_prompt_embeds"] = c.PooledPromptEmbeds,
                ["add_time_ids"] = c.AddTimeIds,
                ["negative_add_time_ids"] = c.NegativeAddTimeIds,
                ["unet.encoder_hidden_states"] = unet.Context!,
                ["unet.text_embeds"] = unet.TextEmbeds!,
                ["unet.time_ids"] = unet.TimeIds!,
            };
            if (c.NegativePromptEmbeds is not null) actual["negative_prompt_embeds"] = c.NegativePromptEmbeds;
            if (c.NegativePooledPromptEmbeds is not null) actual["negative_pooled_prompt_embeds"] = c.NegativePooledPromptEmbeds;
            CheckIds(@case, file, check, covered, call, p);
            Compare(@case, file, check, covered, actual);
        }
        finally
        {
            TextToImagePipeline.Release(request);
        }
    }

    /// <summary>The token ids of prompts and negatives (<c>input_ids.prompt.1/.2</c>, <c>input_ids.negative.1/.2</c>).</summary>
    private static void CheckIds(JsonElement @case, SafetensorsFile file, CaseCheck check, HashSet<string> covered, TextToImage call,
        StableDiffusionXLPipeline p)
    {
        int b = call.Prompts.Count;
        IReadOnlyList<string> Rows(IReadOnlyList<string>? list, IReadOnlyList<string> fallback)
        {
            var rows = list ?? fallback;
            return rows.Count == b ? rows : Enumerable.Repeat(rows[0], b).ToArray();
        }
        var negatives = Rows(call.NegativePrompts, [""]);
        var texts = new Dictionary<string, (IReadOnlyList<string> Texts, Pipelines.Conditioning.ClipPromptEncoder Encoder)>
        {
            ["input_ids.prompt.1"] = (call.Prompts, p.Prompts1),
            ["input_ids.prompt.2"] = (Rows(call.Prompts2, call.Prompts), p.Prompts2),
            ["input_ids.negative.1"] = (negatives, p.Prompts1),
            ["input_ids.negative.2"] = (Rows(call.NegativePrompts2, negatives), p.Prompts2),
        };
        foreach (var (name, (rows, encoder)) in texts)
        {
            if (!file.Contains(name)) continue;
            var actual = rows.SelectMany(t => encoder.Tokenize(t).Ids).ToArray();
            check.Exact(name, actual, file.Load(name).flatten().data<long>().ToArray());
            covered.Add(name);
        }
    }

    private static void RunPipeline(GoldenFolder folder, JsonElement @case, SafetensorsFile file, CaseCheck check, HashSet<string> covered)
    {
        using var pipeline = StableDiffusionXLPipeline.Load(folder.Resolve(@case.GetProperty("model_path").GetString()!));
        var callJson = @case.GetProperty("call");
        var call = Call(callJson, pipeline) with
        {
            Steps = callJson.GetProperty("num_inference_steps").GetInt32(),
            Latents = file.Load("latents_init"),
        };
        using var scheduler = pipeline.CreateScheduler();
        using var recorder = new PipelineRecorder();
        var request = pipeline.Request(call);
        Tensor latents;
        try
        {
            var unet = DiffusionSampler.Conditioning(request, ScalarType.Float32, CPU);
            recorder.Keep("cond.encoder_hidden_states", unet.Context!);
            recorder.Keep("cond.text_embeds", unet.TextEmbeds!);
            recorder.Keep("cond.time_ids", unet.TimeIds!);
            latents = CachedSampling.Sample(pipeline.UNet, scheduler, request, null, [recorder]);
        }
        finally
        {
            TextToImagePipeline.Release(request);
        }
        using var final = latents;
        var actual = new Dictionary<string, Tensor>(recorder.Kept, StringComparer.Ordinal)
        {
            ["latents_final"] = latents,
            ["timesteps"] = tensor(scheduler.Timesteps.Select(t => (float)t).ToArray()),
            ["sigmas"] = tensor(((ISigmaScheduler)scheduler).Sigmas.ToArray()),
        };
        using (no_grad())
        {
            var decoded = pipeline.Vae.Decode(latents / pipeline.Vae.ScalingFactor);
            actual["image_decoded"] = decoded;
            actual["image"] = (decoded / 2 + 0.5).clamp(0, 1);
        }
        Compare(@case, file, check, covered, actual);
    }

    /// <summary>The pipeline call of a case as our <see cref="TextToImage"/> (str or list prompts, null = absent).</summary>
    private static TextToImage Call(JsonElement call, StableDiffusionXLPipeline pipeline)
    {
        IReadOnlyList<string>? List(string key) => call.TryGetProperty(key, out var v) ? v.ValueKind switch
        {
            JsonValueKind.String => [v.GetString()!],
            JsonValueKind.Array => v.EnumerateArray().Select(e => e.GetString()!).ToArray(),
            _ => null,
        } : null;
        (int, int)? Pair(string key) => call.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.Array
            ? (v[0].GetInt32(), v[1].GetInt32()) : null;
        int? clipSkip = call.TryGetProperty("clip_skip", out var cs) && cs.ValueKind == JsonValueKind.Number ? cs.GetInt32() : null;
        return new TextToImage
        {
            Prompts = List("prompt") ?? throw new CaseProblem("the call has no prompt"),
            Prompts2 = List("prompt_2"),
            NegativePrompts = List("negative_prompt"),
            NegativePrompts2 = List("negative_prompt_2"),
            GuidanceScale = call.GetProperty("guidance_scale").GetDouble(),
            ImagesPerPrompt = call.GetProperty("num_images_per_prompt").GetInt32(),
            ClipSkip = clipSkip ?? 0,
            Height = call.GetProperty("height").GetInt32(),
            Width = call.GetProperty("width").GetInt32(),
            OriginalSize = Pair("original_size"),
            CropsTopLeft = Pair("crops_coords_top_left"),
            TargetSize = Pair("target_size"),
            NegativeOriginalSize = Pair("negative_original_size"),
            NegativeCropsTopLeft = Pair("negative_crops_coords_top_left"),
            NegativeTargetSize = Pair("negative_target_size"),
        };
    }

    private static void Compare(JsonElement @case, SafetensorsFile file, CaseCheck check, HashSet<string> covered, Dictionary<string, Tensor> actual)
    {
        foreach (var name in Expected(@case))
        {
            if (name.StartsWith("input_ids.", StringComparison.Ordinal) && covered.Contains(name)) continue;
            var value = actual.TryGetValue(name, out var a) ? a : throw new CaseProblem($"nothing produced '{name}'");
            check.Tensor(name, value, file.Load(name));
            covered.Add(name);
        }
    }

    /// <summary>Keeps what a pipeline case compares per step: the U-Net's input and raw output, the latents after
    /// the step, and named conditioning tensors; freed with the recorder.</summary>
    private sealed class PipelineRecorder : IStepObserver, IDisposable
    {
        public Dictionary<string, Tensor> Kept { get; } = new(StringComparer.Ordinal);

        public void Keep(string name, Tensor t) => Kept[name] = t.detach().clone().DetachFromDisposeScope();

        public void OnModelOutput(StepInfo step, Tensor modelInput, Tensor output)
        {
            Keep($"step.{step.Index}.model_input", modelInput);
            Keep($"step.{step.Index}.noise_pred", output);
        }

        public void EndStep(StepInfo step, Tensor latents) => Keep($"step.{step.Index}.latents", latents);

        public void Dispose()
        {
            foreach (var t in Kept.Values) t.Dispose();
            Kept.Clear();
        }
    }
}
