using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using DiffusionCache.Formats;

namespace DiffusionCache.Caching.BlockCaching;

/// <summary>One profiled generation: its condition and seed and its L1_rel table <c>[block][step]</c>.</summary>
/// <param name="G">The generation's index, g = p * S + s.</param>
/// <param name="Condition">The condition index p (0..P-1).</param>
/// <param name="Seed">The seed index s (0..S-1).</param>
/// <param name="L1Rel">L1_rel (eq. 6) per block (rows, as <see cref="BlockProfile.Blocks"/>) and step (columns, as
/// <see cref="BlockProfile.Timesteps"/>).</param>
public sealed record ProfileGeneration(int G, int Condition, int Seed, double[][] L1Rel);

/// <summary>
/// The per-block change profile of a model under one solver and step count (Block Caching Sec. 3.2, Fig. 2b):
/// L1_rel (eq. 6) of every block and step for each of the P x S generations (condition p, seed s; g = p*S + s),
/// and their mean and population standard deviation over the generations. The mean is what
/// <see cref="ScheduleBuilder"/> turns into a cache schedule. Saved as JSON (<see cref="Save"/>) and exported as
/// CSV (<see cref="ToCsv"/>).
/// </summary>
public sealed record BlockProfile
{
    /// <summary>Model id (the model folder's name).</summary>
    public required string Model { get; init; }
    /// <summary>Where the model was loaded from, for tools that need it again (MAC counts); informational.</summary>
    public string? ModelPath { get; init; }
    /// <summary>The scheduler class (<c>DDIMScheduler</c>, ...).</summary>
    public required string Solver { get; init; }
    /// <summary>The scheduler's full configuration, as read.</summary>
    public JsonElement? SchedulerConfig { get; init; }
    /// <summary>N as passed to <c>set_timesteps</c>.</summary>
    public required int NumInferenceSteps { get; init; }
    /// <summary>The timesteps of one generation, one per U-Net call: the columns of every table.</summary>
    public required IReadOnlyList<double> Timesteps { get; init; }
    /// <summary>The classifier-free guidance scale the profile was sampled with (1.0 when it ran without
    /// guidance).</summary>
    public double GuidanceScale { get; init; }
    /// <summary>The kind of blocks profiled.</summary>
    public required BlockCachingTargets Targets { get; init; }
    /// <summary>Block paths in execution order: the rows of every table.</summary>
    public required IReadOnlyList<string> Blocks { get; init; }
    /// <summary>P, the number of conditions (prompts or class labels) profiled.</summary>
    public required int NumConditions { get; init; }
    /// <summary>S, the number of noise seeds per condition.</summary>
    public required int NumSeeds { get; init; }
    /// <summary>How the conditions and noise were made (free text).</summary>
    public string? Conditions { get; init; }
    /// <summary>The U-Net call's shape: batch (2 with classifier-free guidance), latent height and width, context
    /// tokens (0 without cross-attention). Enough to count MACs per block.</summary>
    public int Batch { get; init; }
    /// <summary>Height of the U-Net's input sample (latent height for latent models).</summary>
    public int SampleHeight { get; init; }
    /// <summary>Width of the U-Net's input sample (latent width for latent models).</summary>
    public int SampleWidth { get; init; }
    /// <summary>Cross-attention context tokens per sample (0 without cross-attention).</summary>
    public int ContextLength { get; init; }
    /// <summary>The P x S generations, g = p * S + s, in order of g.</summary>
    public required IReadOnlyList<ProfileGeneration> Generations { get; init; }
    /// <summary>Arithmetic mean of L1_rel over the generations, <c>[block][step]</c>.</summary>
    public required double[][] Mean { get; init; }
    /// <summary>Population standard deviation (divide by G) of L1_rel over the generations.</summary>
    public required double[][] Std { get; init; }

    /// <summary>Number of U-Net calls per generation (the timesteps).</summary>
    [JsonIgnore]
    public int Steps => Timesteps.Count;

    /// <summary>The median over blocks and steps of the mean change, the first step (which has no previous one) left
    /// out: the unit in which thresholds are given as multiples ("8m"), since δ's scale differs by model and solver.</summary>
    [JsonIgnore]
    public double MedianChange
    {
        get
        {
            var changes = Mean.SelectMany(row => row.Skip(1)).Order().ToArray();
            return changes.Length > 0 ? changes[changes.Length / 2] : throw new DiffusionCacheException("a profile of one step has no step change");
        }
    }

    /// <summary>Mean and population standard deviation (ddof 0) over generations, elementwise, in float64:
    /// mean = (sum over g, in order) / G; std = sqrt((sum over g of (x - mean)^2) / G).</summary>
    public static (double[][] Mean, double[][] Std) Aggregate(IReadOnlyList<double[][]> tables)
    {
        ArgumentNullException.ThrowIfNull(tables);
        if (tables.Count == 0) throw new DiffusionCacheException("a profile needs at least one generation");
        int blocks = tables[0].Length;
        int steps = blocks == 0 ? 0 : tables[0][0].Length;
        if (tables.Any(t => t.Length != blocks || t.Any(row => row.Length != steps)))
            throw new DiffusionCacheException("the generations' L1_rel tables differ in shape");
        var mean = new double[blocks][];
        var std = new double[blocks][];
        for (int i = 0; i < blocks; i++)
        {
            mean[i] = new double[steps];
            std[i] = new double[steps];
            for (int k = 0; k < steps; k++)
            {
                double sum = 0;
                foreach (var t in tables) sum += t[i][k];
                double m = sum / tables.Count;
                double squares = 0;
                foreach (var t in tables) squares += (t[i][k] - m) * (t[i][k] - m);
                mean[i][k] = m;
                std[i][k] = Math.Sqrt(squares / tables.Count);
            }
        }
        return (mean, std);
    }

    /// <summary>Checks that the tables agree with the block list, the timesteps and the P x S grid.</summary>
    public void Validate()
    {
        if (string.IsNullOrEmpty(Model)) throw new DiffusionCacheException("profile: 'model' is empty");
        if (string.IsNullOrEmpty(Solver)) throw new DiffusionCacheException("profile: 'solver' is empty");
        if (NumInferenceSteps < 1) throw new DiffusionCacheException($"profile: num_inference_steps must be >= 1, got {NumInferenceSteps}");
        if (Steps < 1) throw new DiffusionCacheException("profile: 'timesteps' is empty");
        if (Blocks.Count == 0) throw new DiffusionCacheException("profile: 'blocks' is empty");
        if (Blocks.Distinct(StringComparer.Ordinal).Count() != Blocks.Count) throw new DiffusionCacheException("profile: a block is listed twice");
        if (NumConditions < 1 || NumSeeds < 1) throw new DiffusionCacheException("profile: num_conditions and num_seeds must be >= 1");
        CheckTable("mean", Mean);
        CheckTable("std", Std);
        if (Generations.Count != NumConditions * NumSeeds)
            throw new DiffusionCacheException($"profile: {Generations.Count} generations, expected num_conditions x num_seeds = {NumConditions * NumSeeds}");
        for (int g = 0; g < Generations.Count; g++)
        {
            var gen = Generations[g];
            if (gen.G != g || gen.Condition != g / NumSeeds || gen.Seed != g % NumSeeds)
                throw new DiffusionCacheException($"profile: generation {g} must have g = {g}, condition {g / NumSeeds}, seed {g % NumSeeds}");
            CheckTable($"generations[{g}].l1_rel", gen.L1Rel);
        }
    }

    private void CheckTable(string name, double[][]? table)
    {
        if (table is null || table.Length != Blocks.Count || table.Any(row => row is null || row.Length != Steps))
            throw new DiffusionCacheException($"profile: '{name}' must be {Blocks.Count} rows (blocks) of {Steps} values (steps)");
    }

    /// <summary>The profile as indented snake_case JSON (non-finite numbers as strings); validates first.</summary>
    /// <exception cref="DiffusionCacheException">The profile is inconsistent (see <see cref="Validate"/>).</exception>
    public string ToJson()
    {
        Validate();
        return JsonSerializer.Serialize(this, BlockCacheJson.Options);
    }

    /// <summary>Parses and validates a profile written by <see cref="ToJson"/> (comments and trailing commas
    /// allowed, unknown fields refused).</summary>
    /// <exception cref="DiffusionCacheException">The text is not a valid, consistent profile.</exception>
    public static BlockProfile FromJson(string json)
    {
        var profile = BlockCacheJson.Deserialize<BlockProfile>(json, "block profile");
        profile.Validate();
        return profile;
    }

    /// <summary>Writes <see cref="ToJson"/> to <paramref name="path"/> atomically (creating its folder).</summary>
    public void Save(string path) => BlockCacheJson.Write(path, ToJson());

    /// <summary>Reads a profile file; errors name the file.</summary>
    /// <exception cref="DiffusionCacheException">The file is missing or not a valid profile.</exception>
    public static BlockProfile Load(string path) => BlockCacheJson.Read(path, "block profile", FromJson);

    /// <summary>One row per block and step: <c>block,step,timestep,mean,std,g0,...</c> (the L1_rel of each
    /// generation), numbers in round-trip form.</summary>
    public string ToCsv()
    {
        Validate();
        var csv = new StringBuilder("block,step,timestep,mean,std");
        foreach (var g in Generations) csv.Append(",g").Append(g.G.ToString(CultureInfo.InvariantCulture));
        csv.Append('\n');
        for (int i = 0; i < Blocks.Count; i++)
        {
            for (int k = 0; k < Steps; k++)
            {
                csv.Append(Blocks[i]).Append(',').Append(k.ToString(CultureInfo.InvariantCulture)).Append(',')
                    .Append(Number(Timesteps[k])).Append(',').Append(Number(Mean[i][k])).Append(',').Append(Number(Std[i][k]));
                foreach (var g in Generations) csv.Append(',').Append(Number(g.L1Rel[i][k]));
                csv.Append('\n');
            }
        }
        return csv.ToString();
    }

    /// <summary>Writes <see cref="ToCsv"/> to <paramref name="path"/> atomically (creating its folder).</summary>
    public void SaveCsv(string path) => AtomicFile.WriteAllText(path, ToCsv());

    private static string Number(double v) => v.ToString("R", CultureInfo.InvariantCulture);
}
