using DiffusionCache.Formats.Safetensors;
using DiffusionCache.Models.Conditioning;
using DiffusionCache.Models.UNets;
using DiffusionCache.Pipelines;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Caching.BlockCaching;

/// <summary>
/// Profile inputs stored as tensors, in the layout of the golden profile cases: <c>x_T.{s}</c> [1,C,H,W] (seed s),
/// <c>cond.{p}</c> [1,L,D] (condition p) and <c>uncond</c> [1,L,D] (the unconditional context shared by every
/// generation, like the empty prompt). Classifier-free guidance with the given scale.
/// </summary>
public sealed class TensorFileProfileInputs : IProfileInputs, IDisposable
{
    private readonly Tensor[] _noise;
    private readonly Tensor[] _conditions;
    private readonly Tensor _uncond;

    /// <summary>Loads the tensors (as float32) from a safetensors file.</summary>
    /// <param name="path">The safetensors file.</param>
    /// <param name="numConditions">P: <c>cond.0</c> .. <c>cond.{P-1}</c> are read.</param>
    /// <param name="numSeeds">S: <c>x_T.0</c> .. <c>x_T.{S-1}</c> are read.</param>
    /// <param name="guidanceScale">The classifier-free guidance scale of every generation.</param>
    /// <exception cref="DiffusionCacheException">A tensor is missing or misshapen, or a count is below 1.</exception>
    public TensorFileProfileInputs(string path, int numConditions, int numSeeds, double guidanceScale)
    {
        if (numConditions < 1 || numSeeds < 1) throw new DiffusionCacheException("conditions and seeds must be at least 1");
        using var file = SafetensorsFile.Open(path);
        Tensor Load(string name) => file.Contains(name)
            ? file.Load(name, ScalarType.Float32).DetachFromDisposeScope()
            : throw new DiffusionCacheException($"{path}: no tensor '{name}' (needs x_T.0..x_T.{numSeeds - 1}, " +
                $"cond.0..cond.{numConditions - 1} and uncond)");
        _noise = [.. Enumerable.Range(0, numSeeds).Select(s => Load($"x_T.{s}"))];
        _conditions = [.. Enumerable.Range(0, numConditions).Select(p => Load($"cond.{p}"))];
        _uncond = Load("uncond");
        if (_noise.Any(x => x.dim() != 4 || x.shape[0] != 1 || !x.shape.SequenceEqual(_noise[0].shape)))
            throw new DiffusionCacheException($"{path}: every x_T.{{s}} must be [1,C,H,W] of one shape");
        if (_conditions.Any(c => c.dim() != 3 || !c.shape.SequenceEqual(_uncond.shape)) || _uncond.shape[0] != 1)
            throw new DiffusionCacheException($"{path}: every cond.{{p}} must be [1,L,D] shaped like uncond");
        NumConditions = numConditions;
        NumSeeds = numSeeds;
        GuidanceScale = guidanceScale;
        Description = $"{Path.GetFileName(path)}: x_T.{{seed}}, cond.{{condition}}, uncond; guidance {guidanceScale}";
    }

    /// <inheritdoc />
    public int NumConditions { get; }
    /// <inheritdoc />
    public int NumSeeds { get; }
    /// <summary>The classifier-free guidance scale of every generation.</summary>
    public double GuidanceScale { get; }
    /// <inheritdoc />
    public string Description { get; }

    /// <inheritdoc />
    public SamplingRequest Request(int condition, int seed) => new()
    {
        Steps = 1,
        Batch = 1,
        Height = (int)_noise[seed].shape[2],
        Width = (int)_noise[seed].shape[3],
        Context = _conditions[condition],
        UnconditionalContext = _uncond,
        GuidanceScale = GuidanceScale,
        InitialNoise = _noise[seed],
        Seed = seed,
    };

    /// <summary>Frees the loaded tensors; requests made earlier become invalid.</summary>
    public void Dispose()
    {
        foreach (var t in _noise.Concat(_conditions).Append(_uncond)) t.Dispose();
    }
}

/// <summary>
/// Inputs for a bare U-Net folder, which has no conditioning model of its own. Cross-attention models get random
/// N(0,1) contexts [1, L, D]: condition p from a generator seeded with p + 1, the shared unconditional context from
/// seed 0, with classifier-free guidance. Models with a class embedding get class label p (no guidance);
/// unconditional models take one condition. Noise: the sampler's seeded N(0,1) with seed s.
/// </summary>
public sealed class RandomContextProfileInputs : IProfileInputs, IDisposable
{
    private readonly Tensor[] _conditions;
    private readonly Tensor? _uncond;
    private readonly Tensor[] _labels;
    private readonly Tensor[] _pooled = [];
    private readonly Tensor? _uncondPooled, _timeIds;

    /// <summary>Makes the contexts (or labels) up front, on the model's device: contexts and pooled embeddings in its
    /// compute type, size ids in float32, labels int64. The random values are drawn in float32 from CPU generators,
    /// so they are the same whatever device and type the model runs in.</summary>
    /// <param name="unet">The model; its context width, class count and sample size decide the inputs.</param>
    /// <param name="numConditions">P; at most the class count for class-embedding models, 1 for unconditional
    /// ones.</param>
    /// <param name="numSeeds">S.</param>
    /// <param name="guidanceScale">Guidance scale for cross-attention models; ignored otherwise (no guidance).
    /// </param>
    /// <param name="contextLength">L, the tokens of each random context.</param>
    /// <param name="resolution">Height and width of the sample; the model's sample size when null.</param>
    /// <exception cref="DiffusionCacheException">A count, the context length or the resolution is out of range.
    /// </exception>
    public RandomContextProfileInputs(DiffusionUNet unet, int numConditions, int numSeeds, double guidanceScale,
        int contextLength = 77, int? resolution = null)
    {
        ArgumentNullException.ThrowIfNull(unet);
        if (numConditions < 1 || numSeeds < 1) throw new DiffusionCacheException("conditions and seeds must be at least 1");
        if (contextLength < 1) throw new DiffusionCacheException($"context length must be at least 1, got {contextLength}");
        NumConditions = numConditions;
        NumSeeds = numSeeds;
        Side = resolution ?? unet.SampleSize;
        if (Side < 1) throw new DiffusionCacheException($"resolution must be positive, got {Side}");
        if (unet.NumClassEmbeds is int n && numConditions > n)
            throw new DiffusionCacheException($"{unet.ClassName} has {n} classes: at most {n} conditions");
        var weight = unet.parameters().First();
        var (dtype, device) = (weight.dtype, weight.device);
        _labels = unet.NumClassEmbeds is null ? []
            : [.. Enumerable.Range(0, numConditions).Select(p => tensor(new long[] { p }, device: device).DetachFromDisposeScope())];
        if (unet.ContextDim is int d)
        {
            _conditions = [.. Enumerable.Range(0, numConditions).Select(p => Context(p + 1, contextLength, d, dtype, device))];
            _uncond = Context(0, contextLength, d, dtype, device);
            if (unet is UNet2DConditionModel { PooledTextDim: int pooled })
            {
                // SDXL: pooled embeddings like the contexts (condition p: seed 1001+p, unconditional: 1000), and the
                // size ids of an uncropped image of the latent's size.
                _pooled = [.. Enumerable.Range(0, numConditions).Select(p => Pooled(1001 + p, pooled, dtype, device))];
                _uncondPooled = Pooled(1000, pooled, dtype, device);
                float px = Side * 8f;
                _timeIds = tensor(new[] { px, px, 0f, 0f, px, px }, device: device).unsqueeze(0).DetachFromDisposeScope();
            }
            GuidanceScale = guidanceScale;
            Description = $"random N(0,1) contexts [1,{contextLength},{d}] (condition p: seed p+1, unconditional: seed 0), " +
                $"guidance {guidanceScale}; noise: seed s";
        }
        else
        {
            if (_labels.Length == 0 && numConditions > 1)
                throw new DiffusionCacheException($"{unet.ClassName} is unconditional: use one condition");
            _conditions = [];
            GuidanceScale = 1.0;
            Description = _labels.Length == 0 ? "unconditional; noise: seed s" : "class label p, no guidance; noise: seed s";
        }
    }

    /// <inheritdoc />
    public int NumConditions { get; }
    /// <inheritdoc />
    public int NumSeeds { get; }
    /// <summary>Height and width of every generation's sample (latent side for latent models).</summary>
    public int Side { get; }
    /// <summary>The guidance scale of every generation: the given one for cross-attention models, otherwise 1.0
    /// (no guidance).</summary>
    public double GuidanceScale { get; }
    /// <inheritdoc />
    public string Description { get; }

    private static Tensor Context(long seed, int length, int dim, ScalarType dtype, Device device) => Draw(seed, [1, length, dim], dtype, device);

    private static Tensor Pooled(long seed, int dim, ScalarType dtype, Device device) => Draw(seed, [1, dim], dtype, device);

    /// <summary>N(0,1) drawn in float32 by a CPU generator with <paramref name="seed"/>, then placed.</summary>
    private static Tensor Draw(long seed, long[] shape, ScalarType dtype, Device device)
    {
        using var scope = NewDisposeScope();
        using var generator = new Generator((ulong)seed);
        return randn(shape, ScalarType.Float32, generator: generator).to(dtype, device).MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public SamplingRequest Request(int condition, int seed) => new()
    {
        Steps = 1,
        Batch = 1,
        Height = Side,
        Width = Side,
        Context = _conditions.Length > 0 ? _conditions[condition] : null,
        UnconditionalContext = _uncond,
        ClassLabels = _labels.Length == 0 ? null : _labels[condition],
        GuidanceScale = GuidanceScale,
        Seed = seed,
        TextEmbeds = _pooled.Length > 0 ? _pooled[condition] : null,
        UnconditionalTextEmbeds = _uncondPooled,
        TimeIds = _timeIds,
        UnconditionalTimeIds = _timeIds,
    };

    /// <summary>Frees the contexts, labels and embeddings; requests made earlier become invalid.</summary>
    public void Dispose()
    {
        foreach (var t in _conditions.Concat(_labels).Concat(_pooled)) t.Dispose();
        _uncond?.Dispose();
        _uncondPooled?.Dispose();
        _timeIds?.Dispose();
    }
}

/// <summary>
/// Inputs for a class-conditional pipeline folder (<see cref="LatentPipelineFolder"/>): condition p is label p
/// (labels 0..P-1) through the folder's label encoder, the unconditional context is its null label, with
/// classifier-free guidance. Noise: the sampler's seeded N(0,1) with seed s.
/// </summary>
public sealed class ClassLabelProfileInputs : IProfileInputs, IDisposable
{
    private readonly Tensor[] _conditions;
    private readonly Tensor _uncond;

    /// <summary>Embeds labels 0..P-1 and the null label once, under no_grad, on the encoder's device.</summary>
    /// <param name="encoder">The folder's label encoder; its embedding width must be the U-Net's context width.
    /// </param>
    /// <param name="unet">The model to be profiled.</param>
    /// <param name="numConditions">P, at most the encoder's label count.</param>
    /// <param name="numSeeds">S.</param>
    /// <param name="guidanceScale">The classifier-free guidance scale of every generation.</param>
    /// <param name="resolution">Latent height and width; the model's sample size when null.</param>
    /// <exception cref="DiffusionCacheException">A count is out of range or the encoder does not fit the model.
    /// </exception>
    public ClassLabelProfileInputs(LabelEncoder encoder, DiffusionUNet unet, int numConditions, int numSeeds,
        double guidanceScale, int? resolution = null)
    {
        ArgumentNullException.ThrowIfNull(encoder);
        ArgumentNullException.ThrowIfNull(unet);
        if (numConditions < 1 || numSeeds < 1) throw new DiffusionCacheException("conditions and seeds must be at least 1");
        if (numConditions > encoder.Config.NumLabels)
            throw new DiffusionCacheException($"the label encoder has {encoder.Config.NumLabels} labels: at most that many conditions");
        if (unet.ContextDim != encoder.Config.EmbeddingDim)
            throw new DiffusionCacheException($"label embeddings are {encoder.Config.EmbeddingDim} wide, the U-Net's context {unet.ContextDim}");
        NumConditions = numConditions;
        NumSeeds = numSeeds;
        Side = resolution ?? unet.SampleSize;
        GuidanceScale = guidanceScale;
        var device = encoder.parameters().First().device;
        using (no_grad())
        {
            _conditions = [.. Enumerable.Range(0, numConditions).Select(p =>
                encoder.call(tensor(new long[] { p }, device: device)).detach().DetachFromDisposeScope())];
            _uncond = encoder.Null(1, device).detach().DetachFromDisposeScope();
        }
        Description = $"class labels 0..{numConditions - 1} through the label encoder, null label unconditional, " +
            $"guidance {guidanceScale}; noise: seed s";
    }

    /// <inheritdoc />
    public int NumConditions { get; }
    /// <inheritdoc />
    public int NumSeeds { get; }
    /// <summary>Latent height and width of every generation's sample.</summary>
    public int Side { get; }
    /// <summary>The classifier-free guidance scale of every generation.</summary>
    public double GuidanceScale { get; }
    /// <inheritdoc />
    public string Description { get; }

    /// <inheritdoc />
    public SamplingRequest Request(int condition, int seed) => new()
    {
        Steps = 1,
        Batch = 1,
        Height = Side,
        Width = Side,
        Context = _conditions[condition],
        UnconditionalContext = _uncond,
        GuidanceScale = GuidanceScale,
        Seed = seed,
    };

    /// <summary>Frees the label embeddings; requests made earlier become invalid.</summary>
    public void Dispose()
    {
        foreach (var t in _conditions.Append(_uncond)) t.Dispose();
    }
}

/// <summary>
/// Inputs for a text-to-image pipeline (SD 1.x/2.x or SDXL): condition p is prompt p, conditioned as the pipeline
/// conditions it (text encoder contexts; for SDXL also pooled embeddings and size ids), the unconditional side the
/// empty negative prompt (SDXL: zeros where the pipeline zeroes it), with classifier-free guidance. Noise: the
/// sampler's seeded N(0,1) with seed s, at the given latent size.
/// </summary>
public sealed class PromptProfileInputs : IProfileInputs, IDisposable
{
    private readonly SamplingRequest[] _requests;

    /// <summary>Encodes every prompt (and the empty negative prompt) once, under no_grad.</summary>
    /// <param name="pipeline">The text-to-image pipeline whose text encoders condition the prompts.</param>
    /// <param name="texts">The prompts, one per condition (P = their count).</param>
    /// <param name="numSeeds">S.</param>
    /// <param name="guidanceScale">The classifier-free guidance scale of every generation.</param>
    /// <param name="latentHeight">Latent height (image height / the VAE scale factor).</param>
    /// <param name="latentWidth">Latent width (image width / the VAE scale factor).</param>
    /// <exception cref="DiffusionCacheException">No prompt, no seed, or a non-positive latent size.</exception>
    public PromptProfileInputs(TextToImagePipeline pipeline, IReadOnlyList<string> texts, int numSeeds, double guidanceScale,
        int latentHeight, int latentWidth)
    {
        ArgumentNullException.ThrowIfNull(pipeline);
        ArgumentNullException.ThrowIfNull(texts);
        if (texts.Count < 1 || numSeeds < 1) throw new DiffusionCacheException("at least one prompt and one seed are needed");
        if (latentHeight < 1 || latentWidth < 1) throw new DiffusionCacheException("the latent size must be positive");
        NumConditions = texts.Count;
        NumSeeds = numSeeds;
        GuidanceScale = guidanceScale;
        using (no_grad())
            _requests = [.. texts.Select(t => pipeline.Request(new TextToImage
            {
                Prompts = [t], Steps = 1, GuidanceScale = guidanceScale,
                Height = latentHeight * pipeline.VaeScaleFactor, Width = latentWidth * pipeline.VaeScaleFactor,
            }))];
        Description = $"{texts.Count} prompts through the pipeline's text encoders, the empty negative prompt unconditional, " +
            $"guidance {guidanceScale}; noise: seed s, latent {latentHeight}x{latentWidth}";
    }

    /// <inheritdoc />
    public int NumConditions { get; }
    /// <inheritdoc />
    public int NumSeeds { get; }
    /// <summary>The classifier-free guidance scale of every generation.</summary>
    public double GuidanceScale { get; }
    /// <inheritdoc />
    public string Description { get; }

    /// <inheritdoc />
    public SamplingRequest Request(int condition, int seed) => _requests[condition] with { Seed = seed };

    /// <summary>Frees the encoded prompts; requests made earlier become invalid.</summary>
    public void Dispose()
    {
        foreach (var r in _requests) TextToImagePipeline.Release(r);
    }
}
