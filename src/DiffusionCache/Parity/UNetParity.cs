using System.Text.Json;
using DiffusionCache.Formats.Safetensors;
using DiffusionCache.Models.Loading;
using DiffusionCache.Models.UNets;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Parity;

/// <summary>
/// Golden kind <c>unet</c>: forward passes of UNet2DConditionModel / UNet2DModel with every block's output
/// (shared/golden/unet/README.md). Block outputs are observed through the model's seam, so these cases also
/// prove that the seam sees exactly diffusers' module boundaries.
/// </summary>
public sealed class UNetParity : IParitySuite
{
    /// <inheritdoc />
    public string Kind => "unet";

    /// <summary>Runs the cases lazily, one as each result is enumerated, loading the case's model each time. Unlike
    /// the <see cref="CaseParitySuite"/> suites it does not check the folder's kind.</summary>
    /// <param name="folder">A <c>unet</c> golden folder whose manifest lists its <c>models</c>.</param>
    public IEnumerable<ParityResult> Run(GoldenFolder folder)
    {
        var models = folder.Manifest.GetProperty("models").EnumerateArray()
            .ToDictionary(m => m.GetProperty("name").GetString()!, m => m.GetProperty("path").GetString()!);
        foreach (var @case in folder.Cases)
        {
            string id = @case.GetProperty("id").GetString()!;
            ParityResult result;
            try
            {
                result = RunCase(folder, models, @case, id);
            }
            catch (Exception e) when (e is DiffusionCacheException or ArgumentException or KeyNotFoundException or InvalidOperationException)
            {
                result = new ParityResult(id, double.PositiveInfinity, false, e.Message);
            }
            yield return result;
        }
    }

    private static ParityResult RunCase(GoldenFolder folder, Dictionary<string, string> models, JsonElement @case, string id)
    {
        string modelDir = folder.Resolve(models[@case.GetProperty("model").GetString()!]);
        string? variant = @case.TryGetProperty("weights_variant", out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
        var dtype = @case.GetProperty("compute_dtype").GetString() switch
        {
            "float32" => ScalarType.Float32,
            "bfloat16" => ScalarType.BFloat16,
            "float16" => ScalarType.Float16,
            var other => throw new DiffusionCacheException($"unknown compute_dtype '{other}'"),
        };
        var expected = @case.GetProperty("expected").EnumerateArray().Select(e => e.GetString()!).ToArray();
        var check = new CaseCheck(id, Tolerance.FromCase(@case));

        using var scope = NewDisposeScope();
        using var tensors = folder.OpenTensors(@case);
        using var model = UNetLoader.Load(modelDir, variant, dtype);
        CheckForward(model, tensors, expected, check, dtype);
        return check.Result();
    }

    /// <summary>Runs the model on the case's inputs (<c>sample</c>, <c>timestep</c> and, where present,
    /// <c>encoder_hidden_states</c>, <c>class_labels</c>, <c>text_embeds</c>, <c>time_ids</c>) and compares <c>out</c>
    /// and every listed block output, observed through the seam.</summary>
    public static void CheckForward(DiffusionUNet model, SafetensorsFile tensors, IReadOnlyCollection<string> expected, CaseCheck check,
        ScalarType dtype = ScalarType.Float32)
    {
        Tensor? Optional(string name, ScalarType? type) => tensors.Contains(name) ? (type is null ? tensors.Load(name) : tensors.Load(name).to(type.Value)) : null;
        var input = new UNetInput(tensors.Load("sample").to(dtype), tensors.Load("timestep"), Optional("encoder_hidden_states", dtype),
            Optional("class_labels", null), Optional("text_embeds", dtype), Optional("time_ids", dtype));
        using var recorder = new BlockRecorder(expected.ToHashSet(StringComparer.Ordinal));
        Tensor output;
        using (no_grad())
        using (model.Seam.Attach(recorder))
            output = model.Forward(input);
        foreach (var name in expected)
        {
            var actual = name == "out" ? output
                : recorder.Recorded.TryGetValue(name, out var r) ? r
                : throw new DiffusionCacheException($"no block produced '{name}'");
            check.Tensor(name, actual.to(ScalarType.Float32), tensors.Load(name));
        }
    }
}
