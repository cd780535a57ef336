using DiffusionCache.Formats.Safetensors;
using DiffusionCache.Models.Config;
using static TorchSharp.torch;

namespace DiffusionCache.Formats.Checkpoints;

/// <summary>The Stable Diffusion generation a single-file checkpoint belongs to, told by its text encoder's keys.</summary>
public enum LdmFamily
{
    /// <summary>SD 1.x: CLIP ViT-L/14 in transformers layout under <c>cond_stage_model.transformer.</c>.</summary>
    StableDiffusion1,
    /// <summary>SD 2.x: OpenCLIP ViT-H/14 under <c>cond_stage_model.model.</c>.</summary>
    StableDiffusion2,
    /// <summary>SDXL base: CLIP ViT-L/14 under <c>conditioner.embedders.0.transformer.</c> and OpenCLIP ViT-bigG/14
    /// under <c>conditioner.embedders.1.model.</c>.</summary>
    StableDiffusionXL,
}

/// <summary>A single-file checkpoint that is not one we can read: unknown or unsupported family, keys without a place
/// in the model. <see cref="Keys"/> are the file keys at fault (a few of them where there are many).</summary>
/// <param name="filePath">The checkpoint file (or what the caller of <see cref="LdmCheckpoint.DetectFamily"/> calls
/// it).</param>
/// <param name="problem">What is wrong, for the message after the file name.</param>
/// <param name="keys">The file keys at fault, if the problem is about particular keys.</param>
public sealed class LdmCheckpointException(string filePath, string problem, IReadOnlyList<string>? keys = null)
    : DiffusionCacheException($"{filePath}: {problem}")
{
    /// <summary>The checkpoint file the problem is in, as it was named when opened (from
    /// <see cref="LdmCheckpoint.DetectFamily"/>, the description it was given).</summary>
    public string FilePath { get; } = filePath;

    /// <summary>The file keys at fault (unmatched, unplaceable or clashing keys); empty when the problem is not about
    /// particular keys (e.g. a refiner checkpoint).</summary>
    public IReadOnlyList<string> Keys { get; } = keys ?? [];
}

/// <summary>
/// A Stable Diffusion 1.x/2.x or SDXL base single-file checkpoint in the original CompVis/LDM (SGM for SDXL) layout
/// (what A1111 and ComfyUI load): one safetensors file with the U-Net under <c>model.diffusion_model.</c>, the VAE
/// under <c>first_stage_model.</c> and the text encoder under <c>cond_stage_model.</c> (SDXL: both encoders under
/// <c>conditioner.embedders.0/1.</c>). It is read as one <see cref="ITensorSource"/> per component under
/// diffusers/transformers names (<see cref="UNet"/>, <see cref="Vae"/>, <see cref="TextEncoder"/>,
/// <see cref="TextEncoder2"/>), through a
/// key map built from the component's config, in front of the same strict loaders as a diffusers folder. Tensors are
/// read from the file on demand, one at a time, only the bytes each diffusers tensor needs.
/// <para>Strict: every key of the file must be a weight of a component or one of the LDM layout's known non-weights
/// (<see cref="IgnoredKeys"/>); anything else is an error naming it.</para>
/// </summary>
public sealed class LdmCheckpoint : IDisposable
{
    /// <summary>Buffers of CompVis' <c>LatentDiffusion</c> training module (the DDPM schedule, the EMA counters) and of
    /// SGM's denoiser (<c>denoiser.sigmas</c>, in SDXL-family files): saved in the file, never read by diffusers.</summary>
    public static readonly IReadOnlySet<string> TrainingBuffers = new HashSet<string>(StringComparer.Ordinal)
    {
        "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
        "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod", "posterior_variance",
        "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2", "logvar",
        "model_ema.decay", "model_ema.num_updates", "denoiser.sigmas",
    };

    /// <summary>The EMA copy of the U-Net some full checkpoints carry beside the weights; diffusers 0.27.2 loads the
    /// non-EMA weights unless asked (<c>extract_ema</c>), and so do we.</summary>
    public const string EmaPrefix = "model_ema.";

    private const string SdxlBasePrefix = "conditioner.embedders.1.";
    private const string SdxlRefinerPrefix = "conditioner.embedders.0.model.";

    private readonly SafetensorsFile _file;

    /// <summary>The safetensors file, as the path given to <see cref="Open"/>.</summary>
    public string FilePath => _file.FilePath;

    /// <summary>The Stable Diffusion generation, told by the text encoder's keys when the file was opened.</summary>
    public LdmFamily Family { get; }
    /// <summary>Every key of the file.</summary>
    public IReadOnlyList<string> Keys { get; }
    /// <summary>Keys outside the components that hold nothing the pipeline uses (<see cref="TrainingBuffers"/>,
    /// the EMA copy).</summary>
    public IReadOnlyList<string> IgnoredKeys { get; }
    /// <summary>Bytes of all tensors as stored.</summary>
    public long TotalBytes { get; }

    private LdmCheckpoint(SafetensorsFile file, LdmFamily family, IReadOnlyList<string> ignored)
    {
        _file = file;
        Family = family;
        Keys = file.Entries.Select(e => e.Name).Order(StringComparer.Ordinal).ToArray();
        IgnoredKeys = ignored;
        TotalBytes = file.Entries.Sum(e => e.ByteLength);
    }

    /// <summary>Opens the file and tells its family. Throws <see cref="SafetensorsException"/> for a malformed or
    /// truncated file and <see cref="LdmCheckpointException"/> for a refiner checkpoint, an unknown layout or keys
    /// that belong to no component.</summary>
    public static LdmCheckpoint Open(string path)
    {
        var file = SafetensorsFile.Open(path);
        try
        {
            var keys = file.Entries.Select(e => e.Name).Order(StringComparer.Ordinal).ToArray();
            var family = DetectFamily(keys, path);
            var textPrefixes = TextPrefixes(family);
            var foreign = new List<string>();
            var ignored = new List<string>();
            foreach (string key in keys)
            {
                if (key.StartsWith(LdmKeyMap.UNetPrefix, StringComparison.Ordinal) || key.StartsWith(LdmKeyMap.VaePrefix, StringComparison.Ordinal) ||
                    textPrefixes.Any(p => key.StartsWith(p, StringComparison.Ordinal))) continue;
                if (TrainingBuffers.Contains(key) || key.StartsWith(EmaPrefix, StringComparison.Ordinal)) ignored.Add(key);
                else foreign.Add(key);
            }
            if (foreign.Count > 0)
                throw new LdmCheckpointException(path,
                    $"{Count(foreign.Count, "key")} belong to no component of a {Name(family)} checkpoint (U-Net {LdmKeyMap.UNetPrefix}*, " +
                    $"VAE {LdmKeyMap.VaePrefix}*, text {(textPrefixes.Count == 1 ? "encoder" : "encoders")} {string.Join(", ", textPrefixes.Select(p => p + "*"))}): {Few(foreign)}", foreign);
            return new LdmCheckpoint(file, family, ignored);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>SD 1.x (<c>cond_stage_model.transformer.*</c>), SD 2.x (<c>cond_stage_model.model.*</c>) or SDXL
    /// base (<c>conditioner.embedders.1.*</c>, with <c>conditioner.embedders.0.transformer.*</c>); an error for the
    /// SDXL refiner (<c>conditioner.embedders.0.model.*</c> alone) and anything else, naming keys that match no known
    /// layout.</summary>
    public static LdmFamily DetectFamily(IReadOnlyCollection<string> keys, string description)
    {
        ArgumentNullException.ThrowIfNull(keys);
        bool Any(string prefix) => keys.Any(k => k.StartsWith(prefix, StringComparison.Ordinal));
        if (Any(SdxlBasePrefix))
        {
            if (!Any(LdmKeyMap.SdxlClipPrefix))
                throw new LdmCheckpointException(description,
                    $"an SDXL checkpoint without its first text encoder ({LdmKeyMap.SdxlClipPrefix}*, CLIP ViT-L/14 beside {SdxlBasePrefix}*)");
            return LdmFamily.StableDiffusionXL;
        }
        if (Any(SdxlRefinerPrefix))
            throw new LdmCheckpointException(description,
                $"an SDXL refiner checkpoint ({SdxlRefinerPrefix}* without {SdxlBasePrefix}*): refiner checkpoints are not supported");
        bool sd1 = Any(LdmKeyMap.ClipPrefix), sd2 = Any(LdmKeyMap.OpenClipPrefix);
        if (sd1 && sd2)
            throw new LdmCheckpointException(description,
                $"holds both an SD 1.x text encoder ({LdmKeyMap.ClipPrefix}*) and an SD 2.x one ({LdmKeyMap.OpenClipPrefix}*)");
        if (sd1) return LdmFamily.StableDiffusion1;
        if (sd2) return LdmFamily.StableDiffusion2;

        string[] known = [LdmKeyMap.UNetPrefix, LdmKeyMap.VaePrefix, EmaPrefix];
        var unmatched = keys.Where(k => !known.Any(p => k.StartsWith(p, StringComparison.Ordinal)) && !TrainingBuffers.Contains(k))
            .Order(StringComparer.Ordinal).ToList();
        string what = keys.Count == 0 ? "the file holds no tensors"
            : unmatched.Count == 0 ? $"it has no text encoder ({LdmKeyMap.ClipPrefix}* for SD 1.x, {LdmKeyMap.OpenClipPrefix}* for SD 2.x, {SdxlBasePrefix}* for SDXL); its keys are: {Few(keys.Order(StringComparer.Ordinal).ToList())}"
            : $"{Count(unmatched.Count, "key")} match no known layout: {Few(unmatched)}";
        throw new LdmCheckpointException(description, $"not a Stable Diffusion 1.x/2.x or SDXL single-file checkpoint: {what}", unmatched);
    }

    /// <summary>The U-Net's tensors under diffusers names, for a U-Net built from <paramref name="config"/>.</summary>
    public LdmTensorSource UNet(UNet2DConditionConfig config) => Source(LdmKeyMap.UNet(config));

    /// <summary>The VAE's tensors under diffusers names, for a VAE built from <paramref name="config"/>.</summary>
    public LdmTensorSource Vae(AutoencoderKLConfig config) => Source(LdmKeyMap.Vae(config));

    /// <summary>The (first) text encoder's tensors under transformers names, for a <c>CLIPTextModel</c> built from
    /// <paramref name="config"/> (SD 2.x's OpenCLIP layout converted; its layers beyond the config's count are not used).</summary>
    public LdmTensorSource TextEncoder(ClipTextConfig config) => Source(Family switch
    {
        LdmFamily.StableDiffusion1 => LdmKeyMap.ClipText(),
        LdmFamily.StableDiffusion2 => LdmKeyMap.OpenClipText(config),
        _ => LdmKeyMap.ClipText(LdmKeyMap.SdxlClipPrefix),
    });

    /// <summary>SDXL's second text encoder under transformers names, for a <c>CLIPTextModelWithProjection</c> built
    /// from <paramref name="config"/> (OpenCLIP layout converted, <c>text_projection</c> transposed); an error for
    /// the other families, which have one encoder.</summary>
    public LdmTensorSource TextEncoder2(ClipTextConfig config) => Family == LdmFamily.StableDiffusionXL
        ? Source(LdmKeyMap.OpenClipText(config, LdmKeyMap.SdxlOpenClipPrefix, projection: true))
        : throw new LdmCheckpointException(FilePath, $"a {Name(Family)} checkpoint has one text encoder; text_encoder_2 is SDXL's");

    /// <summary>Reads the tensors of one component through <paramref name="map"/>; every key of the file under the
    /// map's prefix must map (or be one the map ignores), and no two keys may supply the same tensor.</summary>
    public LdmTensorSource Source(LdmKeyMap map)
    {
        ArgumentNullException.ThrowIfNull(map);
        var views = new Dictionary<string, LdmTensorSource.View>(StringComparer.Ordinal);
        var unmapped = new List<string>();
        foreach (string key in Keys)
        {
            if (!map.Covers(key) || map.IsIgnored(key)) continue;
            var targets = map.Map(key);
            if (targets is null)
            {
                unmapped.Add(key);
                continue;
            }
            foreach (var target in targets)
            {
                var entry = ViewOf(key, target);
                if (!views.TryAdd(target.Name, new LdmTensorSource.View(key, target.Change, entry)))
                    throw new LdmCheckpointException(FilePath,
                        $"file keys '{views[target.Name].FileKey}' and '{key}' both map to {map.Component} tensor '{target.Name}'", [views[target.Name].FileKey, key]);
            }
        }
        if (unmapped.Count > 0)
            throw new LdmCheckpointException(FilePath,
                $"{Count(unmapped.Count, "key")} under {map.Prefix}* have no place in {map.Description}: {Few(unmapped)}", unmapped);
        return new LdmTensorSource(this, map, views);
    }

    private SafetensorsEntry ViewOf(string key, LdmTarget target)
    {
        var stored = _file.Entry(key);
        var shape = stored.Shape;
        switch (target.Change)
        {
            case LdmChange.None:
                return _file.View(key, target.Name, 0, shape);
            case LdmChange.ConvToLinear:
                if (shape.Length < 2 || shape.Skip(2).Any(d => d != 1))
                    throw new LdmCheckpointException(FilePath,
                        $"'{key}' of shape [{string.Join(", ", shape)}] is not a 1x1 convolution weight that can be read as the linear weight '{target.Name}'", [key]);
                return _file.View(key, target.Name, 0, shape[..2]);
            case LdmChange.Transpose:
                if (shape.Length != 2)
                    throw new LdmCheckpointException(FilePath,
                        $"'{key}' of shape [{string.Join(", ", shape)}] is not a matrix that can be read transposed as '{target.Name}'", [key]);
                return _file.View(key, target.Name, 0, shape);
            case LdmChange.ThirdOfRows:
                if (shape.Length == 0 || shape[0] % 3 != 0)
                    throw new LdmCheckpointException(FilePath,
                        $"'{key}' of shape [{string.Join(", ", shape)}] is not a fused q/k/v projection (first axis not divisible by 3)", [key]);
                long[] part = [shape[0] / 3, .. shape[1..]];
                long partBytes = part.Aggregate(1L, (a, b) => a * b) * stored.DType.ByteSize();
                return _file.View(key, target.Name, target.Part * partBytes, part);
            default:
                throw new ArgumentOutOfRangeException(nameof(target), target.Change, "unknown change");
        }
    }

    internal Tensor Load(SafetensorsEntry view, ScalarType? dtype, Device? device) => _file.Load(view, dtype, device);

    /// <summary>What a family's text encoder keys start with, one prefix per encoder.</summary>
    public static IReadOnlyList<string> TextPrefixes(LdmFamily family) => family switch
    {
        LdmFamily.StableDiffusion1 => [LdmKeyMap.ClipPrefix],
        LdmFamily.StableDiffusion2 => [LdmKeyMap.OpenClipPrefix],
        _ => [LdmKeyMap.SdxlClipPrefix, LdmKeyMap.SdxlOpenClipPrefix],
    };

    /// <summary>The family's name for messages: "Stable Diffusion 1.x", "Stable Diffusion 2.x" or "SDXL".</summary>
    public static string Name(LdmFamily family) => family switch
    {
        LdmFamily.StableDiffusion1 => "Stable Diffusion 1.x",
        LdmFamily.StableDiffusion2 => "Stable Diffusion 2.x",
        _ => "SDXL",
    };

    private static string Count(int n, string what) => n == 1 ? $"1 {what}" : $"{n} {what}s";

    /// <summary>The first few keys of a list, for a one-line message.</summary>
    internal static string Few(IReadOnlyList<string> keys, int few = 5) =>
        string.Join(", ", keys.Take(few).Select(k => $"'{k}'")) + (keys.Count > few ? $", ... ({keys.Count - few} more)" : "");

    /// <summary>Closes the file; the <see cref="LdmTensorSource"/>s made from it can no longer load tensors.</summary>
    public void Dispose() => _file.Dispose();
}

/// <summary>One component of a <see cref="LdmCheckpoint"/> under diffusers/transformers names. Valid while the
/// checkpoint is open.</summary>
public sealed class LdmTensorSource : IRenamedTensorSource
{
    internal sealed record View(string FileKey, LdmChange Change, SafetensorsEntry Entry);

    private readonly LdmCheckpoint _checkpoint;
    private readonly LdmKeyMap _map;
    private readonly Dictionary<string, View> _views;

    internal LdmTensorSource(LdmCheckpoint checkpoint, LdmKeyMap map, Dictionary<string, View> views)
    {
        _checkpoint = checkpoint;
        _map = map;
        _views = views;
        Names = views.Keys.Order(StringComparer.Ordinal).ToArray();
    }

    /// <summary>The diffusers component: <c>unet</c>, <c>vae</c>, <c>text_encoder</c> or <c>text_encoder_2</c>.</summary>
    public string Component => _map.Component;

    /// <summary>The checkpoint file with the component in parentheses, e.g. <c>sd15.safetensors (unet)</c>.</summary>
    public string Description => $"{_checkpoint.FilePath} ({_map.Component})";

    /// <summary>The diffusers/transformers name of every tensor the file supplies for this component, in ordinal
    /// order.</summary>
    public IReadOnlyCollection<string> Names { get; }

    /// <summary>Every tensor with the file key it comes from and how.</summary>
    public IEnumerable<(string Name, string FileKey, LdmChange Change)> Mapping =>
        Names.Select(n => (n, _views[n].FileKey, _views[n].Change));

    /// <summary>The stored bytes of the tensor <paramref name="name"/> in the diffusers shape (a 1x1 convolution
    /// read as a linear weight, one third of a fused q/k/v, a transposed matrix); throws <see cref="DiffusionCacheException"/> for a name
    /// the component does not have.</summary>
    public SafetensorsEntry Entry(string name)
    {
        var view = Find(name);
        return view.Change == LdmChange.Transpose ? view.Entry with { Shape = [.. view.Entry.Shape.Reverse()] } : view.Entry;
    }

    /// <summary>Reads only the bytes of the tensor <paramref name="name"/> from the file into a new tensor that the
    /// caller owns; throws <see cref="DiffusionCacheException"/> for a name the component does not have.</summary>
    /// <param name="name">A diffusers/transformers name, one of <see cref="Names"/>.</param>
    /// <param name="dtype">The type to convert to; null keeps the stored type.</param>
    /// <param name="device">The device to move to; null leaves the tensor on the CPU.</param>
    public Tensor Load(string name, ScalarType? dtype = null, Device? device = null)
    {
        var view = Find(name);
        var stored = _checkpoint.Load(view.Entry, dtype, device);
        if (view.Change != LdmChange.Transpose) return stored;
        using (stored) return stored.t().contiguous();
    }

    /// <summary>The file key that holds <paramref name="name"/>; for a tensor the file lacks, the key the key map
    /// says would hold it (null when none would).</summary>
    public string? FileKey(string name) => _views.TryGetValue(name, out var view) ? view.FileKey : _map.FileKey(name);

    private View Find(string name) =>
        _views.TryGetValue(name, out var view) ? view : throw new DiffusionCacheException($"{Description}: no tensor named '{name}'");
}
