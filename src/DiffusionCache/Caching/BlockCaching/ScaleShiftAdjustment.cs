using System.Globalization;
using DiffusionCache.Formats.Safetensors;
using DiffusionCache.Models.Layers;
using DiffusionCache.Models.Seam;
using DiffusionCache.Models.UNets;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DiffusionCache.Caching.BlockCaching;

/// <summary>
/// The scale-shift adjustment of Block Caching (Sec. 3.4, Fig. 5): for every cached block, a linear layer maps a
/// sinusoidal embedding of the timestep to a per-channel scale and shift of what the cache answers with,
/// C' = C (1 + scale(t)) + shift(t), which realigns a stale cached value with what the block would compute now.
/// Weights start at zero, so an untrained adjustment is the identity. Only these parameters are trained
/// (<see cref="Training.ScaleShiftDistillation"/>); the U-Net stays as it is.
/// </summary>
public sealed class ScaleShiftAdjustment : nn.Module
{
    /// <summary>The default size of the sinusoidal timestep embedding fed to each block's layer.</summary>
    public const int DefaultEmbeddingDim = 64;
    private const string FormatName = "diffusion_cache.scale_shift";

    /// <summary>Submodules are registered explicitly (block paths hold dots, which module names may not).</summary>
    protected override void RegisterComponents() { }

    private readonly Timesteps _embedding;
    private readonly Dictionary<string, Linear> _layers = new(StringComparer.Ordinal);

    /// <summary>The cached blocks, in schedule order, with their channel counts.</summary>
    public IReadOnlyList<(string Path, int Channels)> Blocks { get; }
    /// <summary>Size D of the sinusoidal timestep embedding (even); each block's layer maps D to 2C.</summary>
    public int EmbeddingDim { get; }

    /// <summary>What the adjustment was trained for (schedule, model, solver); written with it and shown on load.</summary>
    public IReadOnlyDictionary<string, string> Description { get; set; } = new Dictionary<string, string>();

    /// <summary>An identity adjustment (all weights zero) with one linear layer per block, in float32 on the CPU.
    /// </summary>
    /// <param name="blocks">The cached blocks' paths and the channel counts C of their outputs.</param>
    /// <param name="embeddingDim">Size of the timestep embedding; even and at least 2.</param>
    /// <exception cref="DiffusionCacheException">No blocks, a block listed twice or with no channels, or an invalid
    /// embedding size.</exception>
    public ScaleShiftAdjustment(IReadOnlyList<(string Path, int Channels)> blocks, int embeddingDim = DefaultEmbeddingDim)
        : base(nameof(ScaleShiftAdjustment))
    {
        ArgumentNullException.ThrowIfNull(blocks);
        if (blocks.Count == 0) throw new DiffusionCacheException("scale-shift adjustment: no blocks to adjust");
        if (embeddingDim < 2 || embeddingDim % 2 != 0)
            throw new DiffusionCacheException($"scale-shift adjustment: embedding size must be even and >= 2, got {embeddingDim}");
        Blocks = blocks;
        EmbeddingDim = embeddingDim;
        _embedding = new Timesteps(embeddingDim, flipSinToCos: true, freqShift: 0);
        for (int i = 0; i < blocks.Count; i++)
        {
            var (path, channels) = blocks[i];
            if (channels < 1) throw new DiffusionCacheException($"scale-shift adjustment: {path} has {channels} channels");
            var layer = nn.Linear(embeddingDim, 2 * channels);
            using (no_grad())
            {
                layer.weight!.zero_();
                layer.bias!.zero_();
            }
            if (!_layers.TryAdd(path, layer)) throw new DiffusionCacheException($"scale-shift adjustment: {path} is listed twice");
            register_module($"block{i}", layer);
        }
    }

    /// <summary>One layer per block the schedule caches, sized by the channels those blocks output in
    /// <paramref name="unet"/> (traced with one small forward pass).</summary>
    public static ScaleShiftAdjustment For(DiffusionUNet unet, CacheSchedule schedule, int embeddingDim = DefaultEmbeddingDim)
    {
        ArgumentNullException.ThrowIfNull(unet);
        ArgumentNullException.ThrowIfNull(schedule);
        var channels = TraceChannels(unet, schedule.Blocks);
        return new ScaleShiftAdjustment([.. schedule.Blocks.Select(b => (b, channels[b]))], embeddingDim);
    }

    /// <summary>Where an adjustment trained for the schedule file <paramref name="schedulePath"/> is written by default
    /// (<c>diffcache train scaleshift --schedule</c>) and can be looked up: beside the schedule, named after it, with the
    /// distillation variant's tag if any (<c>fast.json</c> → <c>fast.scaleshift.safetensors</c>, or
    /// <c>fast.scaleshift-out0.5.safetensors</c>; see <see cref="Training.ScaleShiftDistillationOptions.Tag"/>).</summary>
    /// <param name="schedulePath">The schedule JSON.</param>
    /// <param name="variantTag">The variant's tag; empty for the default distillation.</param>
    public static string DefaultPathFor(string schedulePath, string variantTag = "")
    {
        ArgumentNullException.ThrowIfNull(schedulePath);
        ArgumentNullException.ThrowIfNull(variantTag);
        return Path.Combine(Path.GetDirectoryName(Path.GetFullPath(schedulePath))!,
            $"{Path.GetFileNameWithoutExtension(schedulePath)}.scaleshift{(variantTag.Length > 0 ? "-" + variantTag : "")}.safetensors");
    }

    /// <summary>Whether this adjustment has a layer for the block at <paramref name="path"/>.</summary>
    public bool Adjusts(string path) => _layers.ContainsKey(path);

    /// <summary>C (1 + scale(t)) + shift(t) for a cached value C of block <paramref name="path"/>, [B, C, ...].</summary>
    public Tensor Apply(string path, Tensor cached, double timestep)
    {
        var layer = _layers.GetValueOrDefault(path) ?? throw new DiffusionCacheException($"scale-shift adjustment has no layer for {path}");
        using var scope = NewDisposeScope();
        var p = layer.weight!;
        using var t = tensor(new[] { (float)timestep }, ScalarType.Float32, p.device);
        var coefficients = layer.call(_embedding.call(t).to(p.dtype));           // [1, 2C]
        var shape = new long[cached.dim()];
        Array.Fill(shape, 1L);
        shape[1] = -1;
        var parts = coefficients.chunk(2, 1);
        var scale = parts[0].reshape(shape).to(cached.dtype);
        var shift = parts[1].reshape(shape).to(cached.dtype);
        if (cached.shape[1] * 2 != coefficients.shape[1])
            throw new DiffusionCacheException($"scale-shift adjustment for {path} has {coefficients.shape[1] / 2} channels, the cached value {cached.shape[1]}");
        return (cached * (scale + 1) + shift).MoveToOuterDisposeScope();
    }

    /// <summary>Scale and shift of every block for every timestep of a generation, computed at once (inference:
    /// applying one is then a single fused multiply-add instead of an embedding and a linear layer per reuse). The
    /// caller owns the table; it does not follow later changes of the weights.</summary>
    public ScaleShiftTable Tabulate(IReadOnlyList<double> timesteps)
    {
        ArgumentNullException.ThrowIfNull(timesteps);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var device = _layers.Values.First().weight!.device;
        var embedded = _embedding.call(tensor(timesteps.Select(t => (float)t).ToArray(), ScalarType.Float32, device));   // [T, D]
        var entries = new Dictionary<string, (Tensor Scale, Tensor Shift)>(StringComparer.Ordinal);
        foreach (var (path, layer) in _layers)
        {
            var parts = layer.call(embedded.to(layer.weight!.dtype)).chunk(2, 1);    // [T, C] each
            var scale = (parts[0] + 1).reshape(timesteps.Count, 1, -1, 1, 1).DetachFromDisposeScope();
            var shift = parts[1].reshape(timesteps.Count, 1, -1, 1, 1).DetachFromDisposeScope();
            entries[path] = (scale, shift);
        }
        return new ScaleShiftTable(entries);
    }

    /// <summary>Checks that this adjustment covers exactly the blocks <paramref name="schedule"/> caches.</summary>
    public void Validate(CacheSchedule schedule)
    {
        var mine = Blocks.Select(b => b.Path).ToHashSet(StringComparer.Ordinal);
        var missing = schedule.Blocks.Where(b => !mine.Contains(b)).ToList();
        var extra = mine.Where(b => !schedule.Blocks.Contains(b)).ToList();
        if (missing.Count > 0 || extra.Count > 0)
            throw new DiffusionCacheException("scale-shift adjustment does not fit the schedule: " +
                (missing.Count > 0 ? $"no layer for {string.Join(", ", missing)}" : "") +
                (missing.Count > 0 && extra.Count > 0 ? "; " : "") +
                (extra.Count > 0 ? $"layers for blocks the schedule does not cache: {string.Join(", ", extra)}" : ""));
    }

    /// <summary>Writes <c>{path}.weight</c> [2C, D] and <c>{path}.bias</c> [2C] per block (scale rows first), with the
    /// embedding size and <see cref="Description"/> as metadata; atomically.</summary>
    public void Save(string file)
    {
        var tensors = Blocks.SelectMany(b => new[]
        {
            new KeyValuePair<string, Tensor>($"{b.Path}.weight", _layers[b.Path].weight!),
            new KeyValuePair<string, Tensor>($"{b.Path}.bias", _layers[b.Path].bias!),
        }).ToList();
        var metadata = new Dictionary<string, string>(Description, StringComparer.Ordinal)
        {
            ["format"] = FormatName,
            ["embedding_dim"] = EmbeddingDim.ToString(CultureInfo.InvariantCulture),
            ["blocks"] = string.Join(",", Blocks.Select(b => b.Path)),
        };
        SafetensorsWriter.Write(file, tensors, metadata);
    }

    /// <summary>Reads an adjustment written by <see cref="Save"/> (weights as float32, CPU, in eval mode); the
    /// metadata other than the format's own fields becomes <see cref="Description"/>.</summary>
    /// <exception cref="DiffusionCacheException">The file is not a scale-shift adjustment or its tensors do not
    /// match its metadata.</exception>
    public static ScaleShiftAdjustment Load(string file)
    {
        using var source = SafetensorsFile.Open(file);
        var meta = source.Metadata ?? new Dictionary<string, string>();
        if (meta.GetValueOrDefault("format") != FormatName)
            throw new DiffusionCacheException($"{file}: not a scale-shift adjustment (metadata format is '{meta.GetValueOrDefault("format")}', expected '{FormatName}')");
        if (!int.TryParse(meta.GetValueOrDefault("embedding_dim"), NumberStyles.None, CultureInfo.InvariantCulture, out int dim))
            throw new DiffusionCacheException($"{file}: metadata embedding_dim is missing or not a number");
        var paths = (meta.GetValueOrDefault("blocks") ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries);
        var blocks = new List<(string, int)>();
        foreach (var path in paths)
        {
            if (!source.Contains($"{path}.weight") || !source.Contains($"{path}.bias"))
                throw new DiffusionCacheException($"{file}: {path}.weight or {path}.bias is missing");
            var shape = source.Entry($"{path}.weight").Shape;
            if (shape.Length != 2 || shape[1] != dim || shape[0] % 2 != 0 || !source.Entry($"{path}.bias").Shape.SequenceEqual([shape[0]]))
                throw new DiffusionCacheException($"{file}: {path} has weight [{string.Join(",", shape)}], expected [2C, {dim}] and bias [2C]");
            blocks.Add((path, (int)(shape[0] / 2)));
        }
        var adjustment = new ScaleShiftAdjustment(blocks, dim)
        {
            Description = meta.Where(kv => kv.Key is not ("format" or "embedding_dim" or "blocks")).ToDictionary(kv => kv.Key, kv => kv.Value),
        };
        using (no_grad())
        {
            foreach (var (path, _) in blocks)
            {
                using var w = source.Load($"{path}.weight", ScalarType.Float32);
                using var b = source.Load($"{path}.bias", ScalarType.Float32);
                adjustment._layers[path].weight!.copy_(w);
                adjustment._layers[path].bias!.copy_(b);
            }
        }
        adjustment.eval();
        return adjustment;
    }

    private static Dictionary<string, int> TraceChannels(DiffusionUNet unet, IReadOnlyList<string> paths)
    {
        var tracer = new ChannelTracer(paths.ToHashSet(StringComparer.Ordinal));
        using (var scope = NewDisposeScope())
        using (no_grad())
        using (unet.Seam.Attach(tracer))
        {
            unet.Forward(unet.ZeroInput(1, unet.SampleSize, unet.SampleSize, contextLength: 1));
        }
        var missing = paths.Where(path => !tracer.Channels.ContainsKey(path)).ToList();
        if (missing.Count > 0) throw new DiffusionCacheException($"scale-shift adjustment: the model never calls {string.Join(", ", missing)}");
        return tracer.Channels;
    }

    private sealed class ChannelTracer(IReadOnlySet<string> wanted) : IBlockHook
    {
        public Dictionary<string, int> Channels { get; } = new(StringComparer.Ordinal);

        public BlockOutput Run(BlockCall call, Func<BlockOutput> compute)
        {
            var output = compute();
            if (wanted.Contains(call.Path)) Channels[call.Path] = (int)output.Hidden.shape[1];
            return output;
        }
    }
}

/// <summary>A <see cref="ScaleShiftAdjustment"/> evaluated at the timesteps of one generation (see
/// <see cref="ScaleShiftAdjustment.Tabulate"/>).</summary>
public sealed class ScaleShiftTable : IDisposable
{
    private readonly Dictionary<string, (Tensor Scale, Tensor Shift)> _entries;

    internal ScaleShiftTable(Dictionary<string, (Tensor Scale, Tensor Shift)> entries) => _entries = entries;

    /// <summary>C (1 + scale) + shift for the cached value C [B, C, H, W] of <paramref name="path"/> at step
    /// <paramref name="stepIndex"/>.</summary>
    public Tensor Apply(string path, int stepIndex, Tensor cached)
    {
        var (scale, shift) = _entries.TryGetValue(path, out var e) ? e
            : throw new DiffusionCacheException($"scale-shift adjustment has no layer for {path}");
        using var s = scale.select(0, stepIndex);
        using var h = shift.select(0, stepIndex);
        return addcmul(h.to(cached.dtype), cached, s.to(cached.dtype), 1);
    }

    /// <summary>Frees the table's tensors; <see cref="Apply"/> fails afterwards.</summary>
    public void Dispose()
    {
        foreach (var (scale, shift) in _entries.Values)
        {
            scale.Dispose();
            shift.Dispose();
        }
        _entries.Clear();
    }
}
