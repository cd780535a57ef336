using System.Text.Json;
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
    public string Kind => "unet";

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
        var sample = tensors.Load("sample").to(dtype);
        var timestep = tensors.Load("timestep");
        var context = tensors.Contains("encoder_hidden_states") ? tensors.Load("encoder_hidden_states").to(dtype) : null;
        var labels = tensors.Contains("class_labels") ? tensors.Load("class_labels") : null;

        using var recorder = new BlockRecorder(expected.ToHashSet(StringComparer.Ordinal));
        Tensor output;
        using (no_grad())
        using (model.Seam.Attach(recorder))
            output = model.Forward(new UNetInput(sample, timestep, context, labels));

        foreach (var name in expected)
        {
            var actual = name == "out" ? output
                : recorder.Recorded.TryGetValue(name, out var r) ? r
                : throw new DiffusionCacheException($"no block produced '{name}'");
            check.Tensor(name, actual.to(ScalarType.Float32), tensors.Load(name));
        }
        return check.Result();
    }
}
