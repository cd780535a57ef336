using System.Text.Json;
using DiffusionCache.Formats.Safetensors;
using DiffusionCache.Models.Autoencoders;
using DiffusionCache.Models.Loading;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Parity;

/// <summary>
/// Golden kind <c>textvae</c> (shared/golden/textvae/README.md): the parts of the Stable Diffusion pipeline other than
/// the U-Net. <c>tokenize</c> cases check CLIP token ids exactly; <c>text-encoder</c> cases every hidden state, the
/// final-normalised last and penultimate layers and the pooled output; <c>vae-decode</c>/<c>vae-encode</c> cases the
/// VAE with every named intermediate observed through <see cref="AutoencoderKL.Observer"/>.
/// </summary>
public sealed partial class TextVaeParity : CaseParitySuite
{
    /// <inheritdoc />
    public override string Kind => "textvae";

    /// <summary>textvae names a case's type in its <c>kind</c> field.</summary>
    public static string CaseKind(JsonElement @case) =>
        @case.TryGetProperty("kind", out var k) && k.ValueKind == JsonValueKind.String ? k.GetString()! : "";

    /// <summary>Runs one case by its <c>kind</c> field (see <see cref="CaseKind"/>): <c>tokenize</c>,
    /// <c>text-encoder</c>, <c>vae-decode</c> or <c>vae-encode</c>. A structural problem or an unknown kind is a failed
    /// result with the reason as its detail.</summary>
    /// <param name="folder">The golden folder the case belongs to.</param>
    /// <param name="case">One element of the folder's <see cref="GoldenFolder.Cases"/>.</param>
    public override ParityResult RunCase(GoldenFolder folder, JsonElement @case) => CaseKind(@case) switch
    {
        "tokenize" => RunTokenize(folder, @case),
        "text-encoder" => RunTensorCase(folder, @case, IsInput, (file, check, covered) => RunTextEncoder(folder, @case, file, check, covered)),
        "vae-decode" or "vae-encode" => RunTensorCase(folder, @case, IsInput, (file, check, covered) => RunVae(folder, @case, file, check, covered)),
        var other => new ParityResult(CaseId(@case), double.PositiveInfinity, false, $"unknown case kind '{other}'"),
    };

    private static bool IsInput(string name) => !name.StartsWith("expected.", StringComparison.Ordinal);

    private static void RunTextEncoder(GoldenFolder folder, JsonElement @case, SafetensorsFile file, CaseCheck check, HashSet<string> covered)
    {
        using var model = TextEncoderLoader.Load(ModelDir(folder, @case, "CLIPTextModel"));
        int layers = @case.GetProperty("num_layers").GetInt32();
        if (model.Config.NumHiddenLayers != layers)
            throw new CaseProblem($"the model has {model.Config.NumHiddenLayers} layers, the case says {layers}");
        var ids = file.Load("input_ids");
        using var output = model.Forward(ids, outputHiddenStates: true);
        var pooledIndex = @case.GetProperty("pooled_index").EnumerateArray().Select(e => e.GetInt64()).ToArray();
        check.Exact("pooled_index", model.PooledIndex(ids).data<long>().ToArray(), pooledIndex);

        var actual = new Dictionary<string, Tensor>(StringComparer.Ordinal)
        {
            ["expected.last_hidden_state"] = output.LastHiddenState,
            ["expected.penultimate_normed"] = model.FinalLayerNorm(output.HiddenStates![^2]),
            ["expected.pooler_output"] = output.PooledOutput,
        };
        for (int k = 0; k < output.HiddenStates.Count; k++) actual[$"expected.hidden_states.{k}"] = output.HiddenStates[k];
        CheckExpected(@case, file, check, covered, actual);
    }

    private static void RunVae(GoldenFolder folder, JsonElement @case, SafetensorsFile file, CaseCheck check, HashSet<string> covered)
    {
        using var model = AutoencoderLoader.Load(ModelDir(folder, @case, "AutoencoderKL"));
        // Intermediates are cloned out of the forward pass's (nested) dispose scopes and freed with the case.
        var actual = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var observed = new List<Tensor>();
        using var release = new Releaser(observed);
        model.Observer = (name, t) =>
        {
            var kept = t.detach().clone().DetachFromDisposeScope();
            observed.Add(kept);
            actual["expected.intermediate." + name] = kept;
        };
        using (no_grad())
        {
            if (CaseKind(@case) == "vae-decode")
                actual["expected.image"] = model.Decode(file.Load("latents"));
            else
            {
                var posterior = model.Encode(file.Load("image"));
                actual["expected.mean"] = posterior.Mean;
                actual["expected.logvar"] = posterior.LogVar;
            }
        }
        // The moments are quant_conv's output, which the model reports as an intermediate.
        if (actual.TryGetValue("expected.intermediate.quant_conv", out var moments)) actual["expected.moments"] = moments;
        CheckExpected(@case, file, check, covered, actual);
    }

    private sealed class Releaser(List<Tensor> tensors) : IDisposable
    {
        public void Dispose() => tensors.ForEach(t => t.Dispose());
    }

    /// <summary>Compares every tensor the case lists under <c>expected</c>.</summary>
    private static void CheckExpected(JsonElement @case, SafetensorsFile file, CaseCheck check, HashSet<string> covered,
        Dictionary<string, Tensor> actual)
    {
        foreach (var name in @case.GetProperty("expected").EnumerateArray().Select(e => e.GetString()!))
        {
            var value = actual.TryGetValue(name, out var a) ? a : throw new CaseProblem($"the model produced nothing for '{name}'");
            check.Tensor(name, value, file.Load(name));
            covered.Add(name);
        }
    }

    /// <summary>The manifest's <c>models</c> object: name → { class, path, weights }.</summary>
    private static string ModelDir(GoldenFolder folder, JsonElement @case, string expectedClass)
    {
        string name = @case.GetProperty("model").GetString()!;
        if (!folder.Manifest.TryGetProperty("models", out var models) || !models.TryGetProperty(name, out var model))
            throw new CaseProblem($"manifest has no model '{name}'");
        string cls = model.GetProperty("class").GetString()!;
        if (cls != expectedClass) throw new CaseProblem($"model '{name}' is a {cls}, not a {expectedClass}");
        return folder.Resolve(model.GetProperty("path").GetString()!);
    }
}
