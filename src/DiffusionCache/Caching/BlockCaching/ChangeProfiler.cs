using DiffusionCache.Models.Seam;
using DiffusionCache.Models.UNets;
using DiffusionCache.Pipelines;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Caching.BlockCaching;

/// <summary>
/// Measures how much each target block's change C = out - PassThrough(in) moves from one denoising step to the
/// next during uncached sampling (Block Caching eq. 6):
/// <c>L1_rel(i,k) = sum|C_i^k - C_i^(k-1)| / sum|C_i^k|</c> for k &gt;= 1 and <c>L1_rel(i,0) = 0</c>, the sums over
/// every element of C (the whole batch of the U-Net call: with classifier-free guidance both halves). C is formed
/// in the model's working precision; the difference, absolute values and sums run in float64. Every block runs
/// normally: this is a policy that never reuses, so that it can be attached like a cache
/// (<see cref="CachedSampling.Sample"/>). One <c>[B][N]</c> table per completed generation is kept in
/// <see cref="Generations"/>.
/// </summary>
public sealed class ChangeProfiler : ICachePolicy
{
    private readonly Dictionary<string, int> _index;
    private readonly Tensor?[] _previous;
    private readonly bool[] _seen;
    private double[][]? _current;
    private int _step = -1;
    private int _completedSteps;
    private readonly List<double[][]> _generations = [];

    /// <summary>A profiler for the target blocks of <paramref name="unet"/>.</summary>
    /// <param name="unet">The model it will be attached to; its target blocks become <see cref="Blocks"/>.</param>
    /// <param name="targets">Which blocks to measure; transformers (the paper's default) when null.</param>
    /// <exception cref="DiffusionCacheException">The model has no blocks of that kind.</exception>
    public ChangeProfiler(DiffusionUNet unet, BlockCachingTargets? targets = null)
    {
        Targets = targets ?? BlockCachingTargets.Transformers;
        Blocks = Targets.Paths(unet);
        _index = Blocks.Select((path, i) => (path, i)).ToDictionary(p => p.path, p => p.i, StringComparer.Ordinal);
        _previous = new Tensor?[Blocks.Count];
        _seen = new bool[Blocks.Count];
    }

    /// <inheritdoc />
    public string Name => $"ChangeProfiler {Targets}";
    /// <summary>The kind of blocks measured.</summary>
    public BlockCachingTargets Targets { get; }
    /// <summary>The profiled block paths, in execution order: the rows of every table.</summary>
    public IReadOnlyList<string> Blocks { get; }
    /// <inheritdoc />
    /// <remarks>Every measured evaluation counts as computed (nothing is reused); the cache bytes are the previous
    /// step's changes it holds.</remarks>
    public CacheStatistics Statistics { get; } = new();

    /// <summary>L1_rel of every completed generation, in order: <c>[block][step]</c>.</summary>
    public IReadOnlyList<double[][]> Generations => _generations;

    /// <summary>The timesteps of the last generation.</summary>
    public IReadOnlyList<double> Timesteps { get; private set; } = [];

    /// <summary>Starts a new table with one column per timestep and drops the previous generation's changes.
    /// </summary>
    /// <param name="request">Unused.</param>
    /// <param name="timesteps">The solver's timesteps, one per U-Net call; kept as <see cref="Timesteps"/>.</param>
    public void BeginGeneration(SamplingRequest request, IReadOnlyList<double> timesteps)
    {
        FreePrevious();
        Timesteps = [.. timesteps];
        _current = [.. Blocks.Select(_ => new double[timesteps.Count])];
        _completedSteps = 0;
        _step = -1;
    }

    /// <summary>Records the step index (the table's column).</summary>
    /// <param name="step">Where the loop stands.</param>
    public void BeginStep(StepInfo step)
    {
        _step = step.Index;
        Array.Clear(_seen);
    }

    /// <summary>Runs the block and, for a target block, forms its change C, records L1_rel against the previous
    /// step's C and keeps C for the next step. The block's output is returned unchanged.</summary>
    /// <param name="call">The block call; target blocks must have a pass-through.</param>
    /// <param name="compute">Runs the block.</param>
    /// <exception cref="DiffusionCacheException">A target block has no pass-through, runs twice in one step, or
    /// changes shape between steps.</exception>
    public BlockOutput Run(BlockCall call, Func<BlockOutput> compute)
    {
        if (_current is null || _step < 0 || !_index.TryGetValue(call.Path, out int i)) return compute();
        var output = compute();
        if (_seen[i]) throw new DiffusionCacheException($"{call.Path} ran twice in step {_step}: cannot profile it");
        _seen[i] = true;
        if (call.PassThrough is null)
            throw new DiffusionCacheException($"{call.Path} has no residual pass-through: its change C is undefined");
        using (var scope = NewDisposeScope())
        {
            var pass = call.PassThrough(call.Input);
            var change = output.Hidden - pass;
            var previous = _previous[i];
            if (_step > 0 && previous is not null)
            {
                if (!previous.shape.SequenceEqual(change.shape))
                    throw new DiffusionCacheException($"{call.Path}: change is [{string.Join(",", change.shape)}] at step " +
                        $"{_step} but was [{string.Join(",", previous.shape)}] at the step before");
                var c = change.to(ScalarType.Float64);
                double difference = (c - previous.to(ScalarType.Float64)).abs().sum().item<double>();
                double norm = c.abs().sum().item<double>();
                _current[i][_step] = Ratio(difference, norm);
            }
            previous?.Dispose();
            _previous[i] = change.DetachFromDisposeScope();
        }
        Statistics.Computed(call.Path);
        Statistics.ObserveCacheBytes(_previous.Sum(t => t is null ? 0 : t.numel() * t.ElementSize));
        return output;
    }

    /// <summary>Checks that every target block ran in the step.</summary>
    /// <param name="step">The step that ended.</param>
    /// <param name="latents">Unused.</param>
    /// <exception cref="DiffusionCacheException">A target block did not run (another hook answered it).</exception>
    public void EndStep(StepInfo step, Tensor latents)
    {
        if (_current is null) return;
        int missing = Array.IndexOf(_seen, false);
        if (missing >= 0)
            throw new DiffusionCacheException($"{Blocks[missing]} did not run at step {step.Index} (answered by another " +
                "hook?): its change cannot be measured");
        _completedSteps++;
    }

    /// <summary>Adds the generation's table to <see cref="Generations"/> if every step completed (a cancelled or
    /// failed generation is dropped) and frees the stored changes.</summary>
    public void EndGeneration()
    {
        // A generation that stopped early (cancelled, failed) is not a sample of the profile.
        if (_current is not null && _completedSteps == _current[0].Length) _generations.Add(_current);
        _current = null;
        _step = -1;
        FreePrevious();
    }

    /// <summary>sum|ΔC| / sum|C|; a block whose change is exactly zero has ratio 0 when it stays zero, infinity
    /// otherwise (it changed by an unbounded factor).</summary>
    private static double Ratio(double difference, double norm) =>
        norm != 0 ? difference / norm : difference == 0 ? 0 : double.PositiveInfinity;

    private void FreePrevious()
    {
        for (int i = 0; i < _previous.Length; i++)
        {
            _previous[i]?.Dispose();
            _previous[i] = null;
        }
    }

    /// <summary>Frees the stored changes; <see cref="Generations"/> stays readable.</summary>
    public void Dispose() => FreePrevious();
}
