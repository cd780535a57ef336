using DiffusionCache.Evaluation;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Evaluation;

/// <summary>The store keeps generated batches so a killed sweep resumes: stored batches are not generated again,
/// a batch is whole whatever part is asked for, and another setting's file is never taken for this one's.</summary>
public sealed class SampleStoreTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("samplestore").FullName;
    private static readonly SampleSetting Setting = new("m", "ddim", 20, 4, 4, "none", "no cache", "Float32");

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    /// <summary>Image n of batch b is filled with b * 100 + label, so tests can see which batch and label it came from.</summary>
    private static Tensor Fake(int index, long[] labels, List<int> calls)
    {
        calls.Add(index);
        return stack(labels.Select(l => full([1, 2, 2], index * 100.0 + l)).ToList());
    }

    [Fact]
    public void Generates_missing_batches_once_and_labels_cycle_through_the_classes()
    {
        var store = new SampleStore(_folder);
        var calls = new List<int>();
        var (images, labels) = store.Samples(Setting, 10, 3, (i, l) => Fake(i, l, calls));
        using (images) using (labels)
        {
            Assert.Equal([0, 1, 2], calls);   // 10 samples in batches of 4: the last batch is made whole
            Assert.Equal(new long[] { 10, 1, 2, 2 }, images.shape);
            Assert.Equal(Enumerable.Range(0, 10).Select(i => (long)(i % 3)).ToArray(), labels.data<long>().ToArray());
            Assert.Equal(200.0, images[9].mean().item<float>());   // sample 9: batch 2, label 0
        }
        Assert.Equal(3, store.StoredBatches(Setting));

        var (again, againLabels) = new SampleStore(_folder).Samples(Setting, 12, 3, (i, l) => Fake(i, l, calls));
        using (again) using (againLabels)
        {
            Assert.Equal([0, 1, 2], calls);   // all stored: nothing generated
            Assert.Equal(202.0, again[11].mean().item<float>());
        }
    }

    [Fact]
    public void Another_setting_is_another_folder_and_a_foreign_file_is_refused()
    {
        var store = new SampleStore(_folder);
        var calls = new List<int>();
        var other = Setting with { Steps = 10 };
        Assert.NotEqual(Setting.Key, other.Key);
        // A fingerprint (a retrained adjustment under the same cache name) is another setting; none keeps the old key.
        Assert.NotEqual(Setting.Key, (Setting with { CacheFingerprint = "0123456789abcdef" }).Key);
        Assert.Equal("model=m|solver=ddim|steps=20|guidance=4|batch=4|cache=none|cache_name=no cache|dtype=Float32", Setting.Descriptor);
        store.Samples(Setting, 4, 3, (i, l) => Fake(i, l, calls)).Images.Dispose();
        store.Samples(other, 4, 3, (i, l) => Fake(i, l, calls)).Images.Dispose();
        Assert.Equal([0, 0], calls);

        // A batch file copied into the wrong setting's folder names the mismatch instead of being used.
        File.Copy(Path.Combine(_folder, Setting.Key, "batch-00000.safetensors"), Path.Combine(_folder, other.Key, "batch-00000.safetensors"), overwrite: true);
        var e = Assert.Throws<DiffusionCacheException>(() => store.Samples(other, 4, 3, (i, l) => Fake(i, l, calls)));
        Assert.Contains("another setting", e.Message);
    }

    [Fact]
    public void Refuses_bad_counts()
    {
        var store = new SampleStore(_folder);
        Assert.Throws<DiffusionCacheException>(() => store.Samples(Setting, 0, 3, (i, l) => Fake(i, l, [])));
        Assert.Throws<DiffusionCacheException>(() => store.Samples(Setting with { Batch = 0 }, 4, 3, (i, l) => Fake(i, l, [])));
    }
}
