using System.Text.Json;
using DiffusionCache.Formats;
using DiffusionCache.Formats.Checkpoints;
using DiffusionCache.Formats.Diffusers;
using DiffusionCache.Models.Config;
using DiffusionCache.Models.Loading;
using DiffusionCache.Models.UNets;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Parity;

/// <summary>
/// The golden case types <c>single-file-keys</c> and <c>single-file-unet</c> (shared/golden/sdxl/README.md): a Stable
/// Diffusion single-file checkpoint in the LDM layout read through <see cref="LdmCheckpoint"/> gives exactly the
/// diffusers folder's tensors, and a U-Net loaded from it computes what the folder's does. The configs are the
/// diffusers folder's. Called by the suite of the golden kind that holds these cases.
/// </summary>
public static class SingleFileParity
{
    private static readonly (string Component, string Stem)[] Components =
        [("unet", DiffusersWeights.DefaultStem), ("vae", DiffusersWeights.DefaultStem), ("text_encoder", TextEncoderLoader.WeightsStem)];

    /// <summary><c>single-file-keys</c>: every diffusers tensor of unet, vae and text_encoder equals, bit for bit and
    /// in shape and type, the single-file tensor our key map renames to it; each comes from exactly one file key, every
    /// file key is used, and the map agrees with the case's keymap file (component, name and which keys are reshaped).</summary>
    public static ParityResult RunKeys(GoldenFolder folder, JsonElement @case)
    {
        ArgumentNullException.ThrowIfNull(folder);
        string id = GoldenFolder.CaseId(@case);
        return Guard(id, () =>
        {
            string diffusers = folder.Resolve(@case.GetProperty("diffusers_folder").GetString()!);
            using var checkpoint = LdmCheckpoint.Open(folder.Resolve(@case.GetProperty("single_file").GetString()!));
            var sources = Sources(checkpoint, diffusers);
            var problems = new List<string>();

            // Ours: file key -> (component, name, change); each file key at most once per target, each name once.
            var ours = new Dictionary<string, List<(string Component, string Name, LdmChange Change)>>(StringComparer.Ordinal);
            foreach (var source in sources)
                foreach (var (name, fileKey, change) in source.Mapping)
                {
                    if (!TextEncoderLoader.IsWeight(name)) continue;
                    if (!ours.TryGetValue(fileKey, out var list)) ours[fileKey] = list = [];
                    list.Add((source.Component, name, change));
                }
            var unused = checkpoint.Keys.Where(k => !ours.ContainsKey(k)).ToList();
            if (unused.Count > 0) problems.Add($"file keys not mapped: {string.Join(", ", unused.Take(5))}");
            if (@case.TryGetProperty("num_tensors", out var num) && num.GetInt32() != checkpoint.Keys.Count)
                problems.Add($"the file holds {checkpoint.Keys.Count} tensors, the case says {num.GetInt32()}");

            // Bitwise equality against every tensor of the diffusers folders, each exactly once.
            long compared = 0;
            foreach (var ((component, stem), source) in Components.Zip(sources))
            {
                using var weights = DiffusersWeights.Open(Path.Combine(diffusers, component), null, stem);
                var expected = weights.Names.Where(TextEncoderLoader.IsWeight).ToHashSet(StringComparer.Ordinal);
                var actual = source.Names.Where(TextEncoderLoader.IsWeight).ToHashSet(StringComparer.Ordinal);
                foreach (var name in expected.Except(actual).Order(StringComparer.Ordinal).Take(5))
                    problems.Add($"{component}: '{name}' is supplied by no file key");
                foreach (var name in actual.Except(expected).Order(StringComparer.Ordinal).Take(5))
                    problems.Add($"{component}: file key '{source.FileKey(name)}' maps to '{name}', which the folder does not have");
                foreach (var name in expected.Intersect(actual).Order(StringComparer.Ordinal))
                {
                    using var want = weights.Load(name);
                    using var got = source.Load(name);
                    compared++;
                    if (!Bitwise(got, want))
                        problems.Add($"{component}: '{name}' (file key '{source.FileKey(name)}') differs: {Describe(got)} vs {Describe(want)}");
                }
            }
            if (@case.TryGetProperty("keymap", out var keymap) && keymap.ValueKind == JsonValueKind.String)
                problems.AddRange(CompareKeymap(folder.Resolve(keymap.GetString()!), ours));

            return new ParityResult(id, problems.Count == 0 ? 0 : double.PositiveInfinity, problems.Count == 0,
                problems.Count == 0 ? $"{compared} tensors bitwise equal" : $"{problems.Count} problems: {string.Join("; ", problems.Take(3))}");
        });
    }

    /// <summary><c>single-file-unet</c>: the U-Net built from the case's <c>model_path</c> config and filled from the
    /// single file runs the case's inputs; <c>out</c> and every listed block output are compared with the
    /// case's tolerance, as <see cref="UNetParity"/> compares them.</summary>
    public static ParityResult RunUNet(GoldenFolder folder, JsonElement @case)
    {
        ArgumentNullException.ThrowIfNull(folder);
        string id = GoldenFolder.CaseId(@case);
        return Guard(id, () =>
        {
            string modelDir = folder.Resolve(@case.GetProperty("model_path").GetString()!);
            var dtype = @case.TryGetProperty("compute_dtype", out var d) ? d.GetString() switch
            {
                "float32" => ScalarType.Float32,
                "bfloat16" => ScalarType.BFloat16,
                "float16" => ScalarType.Float16,
                var other => throw new DiffusionCacheException($"unknown compute_dtype '{other}'"),
            } : ScalarType.Float32;
            var expected = @case.GetProperty("expected").EnumerateArray().Select(e => e.GetString()!).ToArray();
            var check = new CaseCheck(id, Tolerance.FromCase(@case));

            using var scope = NewDisposeScope();
            using var tensors = folder.OpenTensors(@case);
            using var checkpoint = LdmCheckpoint.Open(folder.Resolve(@case.GetProperty("single_file").GetString()!));
            var created = UNetLoader.Create(modelDir);
            var unet = created as UNet2DConditionModel ?? throw Disposed(created, $"{modelDir}: a {created.ClassName}; single files hold a UNet2DConditionModel");
            using var model = ComponentLoader.LoadWeights(unet, checkpoint.UNet(unet.Config), dtype, null);
            var sample = tensors.Load("sample").to(dtype);
            var timestep = tensors.Load("timestep");
            var context = tensors.Contains("encoder_hidden_states") ? tensors.Load("encoder_hidden_states").to(dtype) : null;

            using var recorder = new BlockRecorder(expected.ToHashSet(StringComparer.Ordinal));
            Tensor output;
            using (no_grad())
            using (model.Seam.Attach(recorder))
                output = model.Forward(new UNetInput(sample, timestep, context, null));

            foreach (var name in expected)
            {
                var actual = name == "out" ? output
                    : recorder.Recorded.TryGetValue(name, out var r) ? r
                    : throw new DiffusionCacheException($"no block produced '{name}'");
                check.Tensor(name, actual.to(ScalarType.Float32), tensors.Load(name));
            }
            return check.Result();
        });
    }

    /// <summary>The three components of the checkpoint, mapped with the configs of the diffusers folder's unet, vae
    /// and text_encoder.</summary>
    private static LdmTensorSource[] Sources(LdmCheckpoint checkpoint, string diffusers) =>
    [
        checkpoint.UNet(UNet2DConditionConfig.FromFile(Path.Combine(diffusers, "unet", "config.json"))),
        checkpoint.Vae(AutoencoderKLConfig.FromFile(Path.Combine(diffusers, "vae", "config.json"))),
        checkpoint.TextEncoder(TextEncoderLoader.ReadConfig(Path.Combine(diffusers, "text_encoder")).Config),
    ];

    /// <summary>Our map against the keymap file: <c>entries</c> [file key, component, name], one row per file
    /// tensor, and <c>reshaped_keys</c>.</summary>
    private static IEnumerable<string> CompareKeymap(string path, Dictionary<string, List<(string Component, string Name, LdmChange Change)>> ours)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
        var rows = doc.RootElement.GetProperty("entries").EnumerateArray()
            .Select(e => (Key: e[0].GetString()!, Component: e[1].GetString()!, Name: e[2].GetString()!)).ToList();
        var reshaped = doc.RootElement.TryGetProperty("reshaped_keys", out var r)
            ? r.EnumerateArray().Select(e => e.GetString()!).ToHashSet(StringComparer.Ordinal) : [];
        int bad = 0;
        foreach (var row in rows)
        {
            var mine = ours.GetValueOrDefault(row.Key);
            string? problem = mine is null ? $"keymap row '{row.Key}': not mapped by us"
                : mine.Count != 1 || mine[0].Component != row.Component || mine[0].Name != row.Name
                    ? $"keymap row '{row.Key}' -> {row.Component} '{row.Name}': we map it to {string.Join(", ", mine.Select(m => $"{m.Component} '{m.Name}'"))}"
                : (mine[0].Change == LdmChange.ConvToLinear) != reshaped.Contains(row.Key)
                    ? $"keymap row '{row.Key}': reshaped there {reshaped.Contains(row.Key)}, by us {mine[0].Change == LdmChange.ConvToLinear}"
                : null;
            if (problem is not null && bad++ < 5) yield return problem;
        }
        var listed = rows.Select(x => x.Key).ToHashSet(StringComparer.Ordinal);
        foreach (var key in ours.Keys.Where(k => !listed.Contains(k)).Order(StringComparer.Ordinal).Take(5))
            yield return $"we map file key '{key}', which the keymap does not list";
        if (rows.Count != listed.Count) yield return $"the keymap lists {rows.Count - listed.Count} keys twice";
    }

    /// <summary>Same type, same shape, same bytes.</summary>
    public static bool Bitwise(Tensor actual, Tensor expected)
    {
        ArgumentNullException.ThrowIfNull(actual);
        ArgumentNullException.ThrowIfNull(expected);
        if (actual.dtype != expected.dtype || !actual.shape.SequenceEqual(expected.shape)) return false;
        using var a = actual.cpu().contiguous();
        using var e = expected.cpu().contiguous();
        return a.bytes.SequenceEqual(e.bytes);
    }

    private static string Describe(Tensor t) => $"{t.dtype} [{string.Join(",", t.shape)}]";

    private static DiffusionCacheException Disposed(IDisposable model, string message)
    {
        model.Dispose();
        return new DiffusionCacheException(message);
    }

    private static ParityResult Guard(string id, Func<ParityResult> run)
    {
        try
        {
            return run();
        }
        catch (Exception e) when (e is DiffusionCacheException or ArgumentException or KeyNotFoundException or InvalidOperationException)
        {
            return new ParityResult(id, double.PositiveInfinity, false, e.Message);
        }
    }
}
