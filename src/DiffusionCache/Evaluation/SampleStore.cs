using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using DiffusionCache.Formats.Safetensors;
using static TorchSharp.torch;

namespace DiffusionCache.Evaluation;

/// <summary>What determines a set of generated samples: model, solver, steps, guidance, batch size (batch b is
/// seeded with b, so the batch size fixes the noise), the cache setting and the compute type.</summary>
/// <param name="Model">The model as named.</param>
/// <param name="Solver">Solver name.</param>
/// <param name="Steps">Denoising steps.</param>
/// <param name="Guidance">Guidance scale.</param>
/// <param name="Batch">Samples per sampling batch.</param>
/// <param name="Cache">The cache setting as given.</param>
/// <param name="CacheName">The cache setting as resolved (names the schedule's δ and skipped share; its content is
/// in <see cref="CacheFingerprint"/>).</param>
/// <param name="Dtype">The compute type of the pipeline.</param>
public sealed record SampleSetting(string Model, string Solver, int Steps, double Guidance, int Batch, string Cache, string CacheName, string Dtype)
{
    /// <summary>What changes the samples that <see cref="CacheName"/> does not name: a content hash of what the cache
    /// loads (a Block Caching schedule and its scale-shift adjustment), so a changed or retrained file is another
    /// setting; empty where the name says it all.</summary>
    public string CacheFingerprint { get; init; } = "";

    /// <summary>The setting as one line (what the key hashes and a stored batch records). Without a fingerprint it is
    /// what it was before fingerprints, so stores made then keep their keys.</summary>
    public string Descriptor => string.Create(CultureInfo.InvariantCulture,
        $"model={Model}|solver={Solver}|steps={Steps}|guidance={Guidance:R}|batch={Batch}|cache={Cache}|cache_name={CacheName}|dtype={Dtype}")
        + (CacheFingerprint.Length > 0 ? $"|cache_fingerprint={CacheFingerprint}" : "");

    /// <summary>A short stable folder name for the setting (16 hex digits of SHA-256 of <see cref="Descriptor"/>).</summary>
    public string Key => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(Descriptor)))[..16];
}

/// <summary>
/// Generated samples kept on disk batch by batch (<c>FOLDER/KEY/batch-00007.safetensors</c>, images float32 in
/// [-1, 1] on the CPU, the setting in the metadata), so a long sweep killed part-way continues where it stopped and
/// several reports share the samples of a common setting. Sample i asks for label i mod classes and batch b is
/// seeded with b — the scheme of <see cref="ShardedEvaluation"/> — so the first N samples are the same for any
/// N at one batch size.
/// </summary>
/// <param name="folder">Where the batches live (created on first write).</param>
public sealed class SampleStore(string folder)
{
    /// <summary>The store's folder.</summary>
    public string Folder { get; } = folder;

    /// <summary>Generates one batch: its index (also its noise seed) and the labels it asks for; returns images
    /// [n, C, H, W] the store takes over.</summary>
    public delegate Tensor BatchGenerator(int index, long[] labels);

    /// <summary>The first <paramref name="count"/> samples of <paramref name="setting"/> and their requested labels,
    /// loading stored batches and generating (then storing) the rest.</summary>
    /// <param name="setting">What the samples are.</param>
    /// <param name="count">N, at least 1.</param>
    /// <param name="classes">Labels cycle through 0..classes-1.</param>
    /// <param name="generate">Makes a missing batch.</param>
    /// <param name="progress">Told the samples ready so far (stored or generated).</param>
    /// <param name="cancel">Checked between batches.</param>
    /// <returns>Images float32 [N, C, H, W] on the CPU and labels int64 [N]; the caller owns both.</returns>
    public (Tensor Images, Tensor Labels) Samples(SampleSetting setting, int count, int classes, BatchGenerator generate,
        IProgress<long>? progress = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(setting);
        ArgumentNullException.ThrowIfNull(generate);
        if (count < 1) throw new DiffusionCacheException("need at least 1 sample");
        if (setting.Batch < 1) throw new DiffusionCacheException("batch must be positive");
        var parts = new List<Tensor>();
        try
        {
            for (int start = 0, index = 0; start < count; start += setting.Batch, index++)
            {
                cancel.ThrowIfCancellationRequested();
                // A batch is whole even when only part of it is asked for: its size fixes its noise.
                var labels = Enumerable.Range(start, setting.Batch).Select(i => (long)(i % classes)).ToArray();
                var images = Load(setting, index, labels.Length) ?? Store(setting, index, generate(index, labels));
                int take = Math.Min(setting.Batch, count - start);
                parts.Add(take == labels.Length ? images : Narrowed(images, take));
                progress?.Report(start + take);
            }
            var all = cat(parts);
            return (all, tensor(Enumerable.Range(0, count).Select(i => (long)(i % classes)).ToArray()));
        }
        finally
        {
            foreach (var p in parts) p.Dispose();
        }
    }

    /// <summary>How many of the first batches of <paramref name="setting"/> are stored (for progress messages).</summary>
    public int StoredBatches(SampleSetting setting)
    {
        int n = 0;
        while (File.Exists(BatchPath(setting, n))) n++;
        return n;
    }

    private string BatchPath(SampleSetting setting, int index) =>
        Path.Combine(Folder, setting.Key, $"batch-{index:D5}.safetensors");

    private Tensor? Load(SampleSetting setting, int index, int count)
    {
        string path = BatchPath(setting, index);
        if (!File.Exists(path)) return null;
        using var file = SafetensorsFile.Open(path);
        if (!file.Metadata.TryGetValue("setting", out var stored) || stored != setting.Descriptor)
            throw new DiffusionCacheException($"{path}: holds samples of another setting ({stored ?? "none recorded"}); delete it or use another store folder");
        var images = file.Load("images");
        if (images.shape[0] != count)
        {
            images.Dispose();
            throw new DiffusionCacheException($"{path}: {images.shape[0]} samples, expected {count}; delete it to regenerate");
        }
        return images;
    }

    private Tensor Store(SampleSetting setting, int index, Tensor generated)
    {
        using (generated)
        {
            var images = generated.detach().to(ScalarType.Float32, CPU).contiguous().clone();
            string path = BatchPath(setting, index);
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            SafetensorsWriter.Write(path, [new("images", images)], new Dictionary<string, string> { ["setting"] = setting.Descriptor });
            return images;
        }
    }

    private static Tensor Narrowed(Tensor images, int take)
    {
        using (images) return images.narrow(0, 0, take).clone();
    }
}
