using System.Text.Json;
using DiffusionCache.Models.Autoencoders;
using DiffusionCache.Models.Loading;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Parity;

/// <summary>
/// Golden kind <c>textvae</c>, VAE part: the <c>vae-decode</c> and <c>vae-encode</c> cases
/// (shared/golden/textvae/README.md), with every named intermediate observed through
/// <see cref="AutoencoderKL.Observer"/>.
/// <para>
/// The same folder also holds <c>tokenize</c> and <c>text-encoder</c> cases. This suite has no tokenizer or text
/// encoder to run them with, so it neither runs nor reports them: <see cref="Run"/> yields results for VAE cases
/// only and records the ids of the cases it left out in <see cref="NotRun"/>. A caller that counts passes must
/// not read the missing cases as passed.
/// </para>
/// </summary>
public sealed class VaeParity : IParitySuite
{
    public static readonly IReadOnlySet<string> CaseKinds = new HashSet<string>(StringComparer.Ordinal) { "vae-decode", "vae-encode" };

    private IReadOnlyList<string> _notRun = [];

    public string Kind => "textvae";

    /// <summary>Ids of the cases of other kinds in the folder given to the last <see cref="Run"/> call.</summary>
    public IReadOnlyList<string> NotRun => _notRun;
    public int NotRunCount => _notRun.Count;

    /// <summary>Runs every VAE case (lazily); <see cref="NotRun"/> is set when this is called, before enumeration.</summary>
    public IEnumerable<ParityResult> Run(GoldenFolder folder)
    {
        CheckKind(folder);
        _notRun = folder.Cases.Where(c => !IsVaeCase(c)).Select(Id).ToArray();
        return RunLazily(folder);
    }

    private static IEnumerable<ParityResult> RunLazily(GoldenFolder folder)
    {
        foreach (var @case in folder.Cases.Where(IsVaeCase)) yield return RunCase(folder, @case);
    }

    /// <summary>Runs one VAE case by id.</summary>
    public ParityResult RunCase(GoldenFolder folder, string caseId)
    {
        CheckKind(folder);
        var @case = folder.Cases.FirstOrDefault(c => Id(c) == caseId);
        if (@case.ValueKind != JsonValueKind.Object) throw new DiffusionCacheException($"{folder.Path}: no case '{caseId}'");
        if (!IsVaeCase(@case)) throw new DiffusionCacheException($"{caseId}: not a VAE case (kind '{CaseKind(@case)}')");
        return RunCase(folder, @case);
    }

    public static bool IsVaeCase(JsonElement @case) => CaseKinds.Contains(CaseKind(@case));

    private void CheckKind(GoldenFolder folder)
    {
        if (folder.Kind != Kind) throw new DiffusionCacheException($"{folder.Path}: a '{folder.Kind}' folder, expected '{Kind}'");
    }

    private static string Id(JsonElement @case) => @case.GetProperty("id").GetString()!;

    private static string CaseKind(JsonElement @case) =>
        @case.TryGetProperty("kind", out var k) && k.ValueKind == JsonValueKind.String ? k.GetString()! : "";

    private static ParityResult RunCase(GoldenFolder folder, JsonElement @case)
    {
        string id = Id(@case);
        try
        {
            return RunChecked(folder, @case, id);
        }
        catch (Exception e) when (e is DiffusionCacheException or ArgumentException or KeyNotFoundException or InvalidOperationException)
        {
            return new ParityResult(id, double.PositiveInfinity, false, e.Message);
        }
    }

    private static ParityResult RunChecked(GoldenFolder folder, JsonElement @case, string id)
    {
        var expected = @case.GetProperty("expected").EnumerateArray().Select(e => e.GetString()!).ToArray();
        var check = new CaseCheck(id, Tolerance.FromCase(@case));

        using var scope = NewDisposeScope();
        using var tensors = folder.OpenTensors(@case);
        using var model = AutoencoderLoader.Load(ModelDir(folder, @case.GetProperty("model").GetString()!));

        // Intermediates are cloned out of the forward pass's (nested) dispose scopes and owned here.
        var observed = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        using var release = new Releaser(observed);
        model.Observer = (name, t) =>
        {
            if (observed.Remove(name, out var old)) old.Dispose();
            observed[name] = t.detach().clone().DetachFromDisposeScope();
        };
        var outputs = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        using (no_grad())
        {
            switch (CaseKind(@case))
            {
                case "vae-decode":
                    outputs["expected.image"] = model.Decode(tensors.Load("latents"));
                    break;
                case "vae-encode":
                    var posterior = model.Encode(tensors.Load("image"));
                    outputs["expected.mean"] = posterior.Mean;
                    outputs["expected.logvar"] = posterior.LogVar;
                    break;
            }
        }
        // The moments are quant_conv's output, which the model reports as an intermediate.
        if (observed.TryGetValue("quant_conv", out var moments)) outputs["expected.moments"] = moments;

        const string intermediate = "expected.intermediate.";
        foreach (var name in expected)
        {
            var actual = outputs.TryGetValue(name, out var o) ? o
                : name.StartsWith(intermediate, StringComparison.Ordinal) && observed.TryGetValue(name[intermediate.Length..], out var r) ? r
                : throw new DiffusionCacheException($"the model produced nothing for '{name}'");
            check.Tensor(name, actual, tensors.Load(name));
        }
        return check.Result();
    }

    private sealed class Releaser(Dictionary<string, Tensor> tensors) : IDisposable
    {
        public void Dispose()
        {
            foreach (var t in tensors.Values) t.Dispose();
            tensors.Clear();
        }
    }

    /// <summary>The manifest's <c>models</c> object: name → { class, path, weights }.</summary>
    private static string ModelDir(GoldenFolder folder, string name)
    {
        if (!folder.Manifest.TryGetProperty("models", out var models) || !models.TryGetProperty(name, out var model))
            throw new DiffusionCacheException($"{folder.Path}: manifest has no model '{name}'");
        string cls = model.GetProperty("class").GetString()!;
        if (cls != "AutoencoderKL") throw new DiffusionCacheException($"model '{name}' is a {cls}, not an AutoencoderKL");
        string weights = model.GetProperty("weights").GetString()!;
        if (weights != "diffusion_pytorch_model.safetensors")
            throw new DiffusionCacheException($"model '{name}': weights file '{weights}' is not diffusers' default name");
        return folder.Resolve(model.GetProperty("path").GetString()!);
    }
}
