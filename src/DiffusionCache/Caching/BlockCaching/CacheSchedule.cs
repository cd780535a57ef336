using System.Globalization;
using System.Text;
using System.Text.Json;
using DiffusionCache.Analysis;
using DiffusionCache.Formats.Json;
using DiffusionCache.Models.UNets;

namespace DiffusionCache.Caching.BlockCaching;

/// <summary>
/// When each cached block computes (Block Caching Sec. 3.3, Fig. 4): per block, the sorted denoising-step indices
/// at which it runs and refreshes its cache; at every other step it reuses the cache. A schedule belongs to one
/// model, solver and step count; <see cref="Validate"/> checks that before anything runs. Made from a profile by
/// <see cref="ScheduleBuilder"/> or written by hand (<see cref="FromJson"/>):
/// <code>
/// {
///   "model": "tiny-sd-unet-bc",            // informational
///   "solver": "DDIMScheduler",
///   "num_inference_steps": 10,
///   "num_steps": 10,                       // optional: U-Net calls per generation (PNDM makes more), default N
///   "targets": "transformer2d",            // or "resnet2d", or both: "transformer2d,resnet2d"
///   "delta": 0.2,                          // optional: the threshold it was made with
///   "compute_steps": {                     // block path -> steps it computes (must include 0)
///     "down_blocks.0.attentions.0": [0, 2],
///     "mid_block.attentions.0": [0, 1, 2, 3, 5, 8]
///   }
/// }
/// </code>
/// Blocks a schedule does not list are not cached (they compute every step).
/// </summary>
public sealed record CacheSchedule
{
    /// <summary>Model id (informational: a model folder may be renamed; the block paths are checked).</summary>
    public required string Model { get; init; }
    /// <summary>The scheduler class the schedule was made for.</summary>
    public required string Solver { get; init; }
    /// <summary>N as passed to <c>set_timesteps</c>.</summary>
    public required int NumInferenceSteps { get; init; }
    /// <summary>U-Net calls per generation: the range of the step indices (N for every solver but PNDM).</summary>
    public required int Steps { get; init; }
    /// <summary>The kinds of blocks scheduled; every listed path must be a site of one of them.</summary>
    public required BlockCachingTargets Targets { get; init; }
    /// <summary>The threshold δ of eq. 7, when the schedule was made from a profile.</summary>
    public double? Delta { get; init; }
    /// <summary>The scheduled blocks, in execution order for built schedules (file order for hand-written ones).</summary>
    public required IReadOnlyList<string> Blocks { get; init; }
    /// <summary>Per block (same order as <see cref="Blocks"/>): the strictly increasing steps it computes.</summary>
    public required IReadOnlyList<IReadOnlyList<int>> ComputeSteps { get; init; }

    /// <summary>Scheduled block evaluations that compute, over one generation (all blocks' compute steps).</summary>
    public int NumComputed => ComputeSteps.Sum(s => s.Count);
    /// <summary>B * N: scheduled block evaluations of one generation, computed or reused.</summary>
    public int NumBlockEvaluations => Blocks.Count * Steps;
    /// <summary>(B*N - computed) / (B*N): the fraction of block evaluations answered from the cache.</summary>
    public double SkippedFraction => (double)(NumBlockEvaluations - NumComputed) / NumBlockEvaluations;

    /// <summary>Whether block number <paramref name="block"/> (index into <see cref="Blocks"/>) computes at step
    /// <paramref name="step"/> (0-based U-Net call); otherwise it reuses its cache.</summary>
    public bool Computes(int block, int step) => ComputeSteps[block].Contains(step);

    /// <summary><c>[block][step]</c>: true where the block computes.</summary>
    public bool[][] ComputeMask() =>
        [.. ComputeSteps.Select(steps => { var row = new bool[Steps]; foreach (var k in steps) row[k] = true; return row; })];

    /// <summary>Cache lifetimes (Fig. 4): per block, each compute step and the step before which the cache is
    /// next refreshed (or <see cref="Steps"/>): the block reuses during [Start+1, End).</summary>
    public IReadOnlyList<(int Block, int Start, int End)> Lifetimes() =>
        [.. ComputeSteps.SelectMany((steps, i) => steps.Select((k, j) => (i, k, j + 1 < steps.Count ? steps[j + 1] : Steps)))];

    /// <summary>Checks the schedule's own consistency: names, counts, step lists (sorted, distinct, in range,
    /// starting at 0: the cache is empty at the first step) and δ &gt; 0.</summary>
    public void CheckStructure()
    {
        if (string.IsNullOrWhiteSpace(Model)) throw new DiffusionCacheException("schedule: 'model' is empty");
        if (string.IsNullOrWhiteSpace(Solver)) throw new DiffusionCacheException("schedule: 'solver' is empty");
        if (Delta is double d && !(d > 0)) throw new DiffusionCacheException($"schedule: delta must be > 0, got {Format(d)}");
        if (NumInferenceSteps < 1) throw new DiffusionCacheException($"schedule: num_inference_steps must be >= 1, got {NumInferenceSteps}");
        if (Steps < 1) throw new DiffusionCacheException($"schedule: num_steps must be >= 1, got {Steps}");
        if (Blocks.Count == 0) throw new DiffusionCacheException("schedule: no blocks");
        if (ComputeSteps.Count != Blocks.Count)
            throw new DiffusionCacheException($"schedule: {Blocks.Count} blocks but {ComputeSteps.Count} compute-step lists");
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < Blocks.Count; i++)
        {
            if (!seen.Add(Blocks[i])) throw new DiffusionCacheException($"schedule: block '{Blocks[i]}' is listed twice");
            var steps = ComputeSteps[i];
            if (steps.Count == 0 || steps[0] != 0)
                throw new DiffusionCacheException($"schedule: {Blocks[i]}: compute steps must include step 0 (the cache is empty at the first step)");
            for (int j = 0; j < steps.Count; j++)
            {
                if (steps[j] < 0 || steps[j] >= Steps)
                    throw new DiffusionCacheException($"schedule: {Blocks[i]}: step {steps[j]} is outside 0..{Steps - 1}");
                if (j > 0 && steps[j] <= steps[j - 1])
                    throw new DiffusionCacheException($"schedule: {Blocks[i]}: compute steps must be increasing and distinct ({steps[j - 1]}, {steps[j]})");
            }
        }
    }

    /// <summary>Checks, before any work, that the schedule fits the model, the solver and the step count; the first
    /// mismatch is a <see cref="DiffusionCacheException"/> naming it.</summary>
    public void Validate(DiffusionUNet unet, string solver, int numInferenceSteps)
    {
        ArgumentNullException.ThrowIfNull(unet);
        CheckStructure();
        if (!string.Equals(solver, Solver, StringComparison.Ordinal))
            throw new DiffusionCacheException($"schedule is for solver {Solver}, sampling uses {solver}");
        if (numInferenceSteps != NumInferenceSteps)
            throw new DiffusionCacheException($"schedule is for {NumInferenceSteps} steps, sampling runs {numInferenceSteps}");
        var known = Targets.Paths(unet).ToHashSet(StringComparer.Ordinal);
        foreach (var block in Blocks)
        {
            if (!known.Contains(block))
                throw new DiffusionCacheException($"schedule: unknown block path '{block}' (not a {Targets.ModuleClass} of this " +
                    $"{unet.ClassName}; its {Targets.Name} blocks are {string.Join(", ", known)})");
        }
    }

    /// <summary>Speedup in MACs if the skipped evaluations cost nothing but their pass-through (the 1x1 shortcut
    /// of a resnet is recomputed on reuse): total / (total - saved), over one generation of <see cref="Steps"/>
    /// U-Net calls. <paramref name="macs"/> is one U-Net call (<see cref="MacCounter.Count"/>).</summary>
    public double MacSpeedup(MacReport macs)
    {
        ArgumentNullException.ThrowIfNull(macs);
        double total = (double)macs.Total * Steps;
        double saved = 0;
        for (int i = 0; i < Blocks.Count; i++)
            saved += (double)(Steps - ComputeSteps[i].Count) * (macs.Of(Blocks[i]) - macs.PassThroughOf(Blocks[i]));
        return total / (total - saved);
    }

    /// <summary>The schedule in the file format above (<c>num_steps</c> only when it differs from N, plus an
    /// informational <c>skipped_fraction</c>); checks the structure first.</summary>
    /// <exception cref="DiffusionCacheException">The schedule is inconsistent (see <see cref="CheckStructure"/>).
    /// </exception>
    public string ToJson()
    {
        CheckStructure();
        var json = new StringBuilder("{\n");
        void Field(string name, string value) => json.Append("  ").Append(JsonSerializer.Serialize(name)).Append(": ").Append(value).Append(",\n");
        Field("model", JsonSerializer.Serialize(Model));
        Field("solver", JsonSerializer.Serialize(Solver));
        Field("num_inference_steps", NumInferenceSteps.ToString(CultureInfo.InvariantCulture));
        if (Steps != NumInferenceSteps) Field("num_steps", Steps.ToString(CultureInfo.InvariantCulture));
        Field("targets", JsonSerializer.Serialize(Targets.Name));
        if (Delta is double d) Field("delta", Format(d));
        Field("skipped_fraction", Format(SkippedFraction));
        json.Append("  \"compute_steps\": {\n");
        for (int i = 0; i < Blocks.Count; i++)
        {
            json.Append("    ").Append(JsonSerializer.Serialize(Blocks[i])).Append(": [")
                .Append(string.Join(", ", ComputeSteps[i].Select(k => k.ToString(CultureInfo.InvariantCulture)))).Append(']')
                .Append(i + 1 < Blocks.Count ? ",\n" : "\n");
        }
        json.Append("  }\n}\n");
        return json.ToString();
    }

    /// <summary>Reads a schedule (comments and trailing commas allowed). Step lists may be in any order; they are
    /// sorted. <c>skipped_fraction</c> is informational and recomputed.</summary>
    public static CacheSchedule FromJson(string json)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json, new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
        }
        catch (JsonException e)
        {
            throw new DiffusionCacheException($"not valid JSON ({e.Message})", e);
        }
        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw new DiffusionCacheException("a schedule must be a JSON object");
            string[] knownFields = ["model", "solver", "num_inference_steps", "num_steps", "targets", "delta", "skipped_fraction", "compute_steps"];
            foreach (var p in root.EnumerateObject())
            {
                if (!knownFields.Contains(p.Name))
                    throw new DiffusionCacheException($"unknown schedule field '{p.Name}' (fields: {string.Join(", ", knownFields)})");
            }
            int n = Int(root, "num_inference_steps");
            var blocks = new List<string>();
            var steps = new List<IReadOnlyList<int>>();
            var computeSteps = Required(root, "compute_steps", JsonValueKind.Object);
            foreach (var block in computeSteps.EnumerateObject())
            {
                if (block.Value.ValueKind != JsonValueKind.Array)
                    throw new DiffusionCacheException($"compute_steps.{block.Name} must be a list of step indices");
                var list = new List<int>();
                foreach (var k in block.Value.EnumerateArray())
                {
                    if (k.ValueKind != JsonValueKind.Number || !k.TryGetInt32(out int step))
                        throw new DiffusionCacheException($"compute_steps.{block.Name}: '{k.GetRawText()}' is not an integer step index");
                    list.Add(step);
                }
                list.Sort();
                blocks.Add(block.Name);
                steps.Add(list);
            }
            double? delta = root.TryGetProperty("delta", out var deltaElement)
                ? PythonJson.TryGetDouble(deltaElement, out double d) ? d : throw new DiffusionCacheException("'delta' must be a number")
                : null;
            var schedule = new CacheSchedule
            {
                Model = String(root, "model"),
                Solver = String(root, "solver"),
                NumInferenceSteps = n,
                Steps = root.TryGetProperty("num_steps", out _) ? Int(root, "num_steps") : n,
                Targets = BlockCachingTargets.Parse(String(root, "targets")),
                Delta = delta,
                Blocks = blocks,
                ComputeSteps = steps,
            };
            schedule.CheckStructure();
            return schedule;
        }
    }

    /// <summary>Writes <see cref="ToJson"/> to <paramref name="path"/> atomically (creating its folder).</summary>
    public void Save(string path) => BlockCacheJson.Write(path, ToJson());

    /// <summary>Reads a schedule file (<see cref="FromJson"/>); errors name the file. Not checked against a model:
    /// call <see cref="Validate"/>.</summary>
    /// <exception cref="DiffusionCacheException">The file is missing or not a valid schedule.</exception>
    public static CacheSchedule Load(string path) => BlockCacheJson.Read(path, "cache schedule", FromJson);

    private static JsonElement Required(JsonElement root, string name, JsonValueKind kind) =>
        root.TryGetProperty(name, out var e) && e.ValueKind == kind
            ? e
            : throw new DiffusionCacheException($"schedule field '{name}' is missing or not a{(kind == JsonValueKind.Object ? "n object" : $" {kind.ToString().ToLowerInvariant()}")}");

    private static string String(JsonElement root, string name) => Required(root, name, JsonValueKind.String).GetString()!;

    private static int Int(JsonElement root, string name) =>
        Required(root, name, JsonValueKind.Number).TryGetInt32(out int v) ? v
            : throw new DiffusionCacheException($"schedule field '{name}' must be an integer");

    private static string Format(double v) =>
        double.IsFinite(v) ? v.ToString("R", CultureInfo.InvariantCulture) : JsonSerializer.Serialize(v.ToString(CultureInfo.InvariantCulture));
}
