using DiffusionCache.Formats.Safetensors;
using static TorchSharp.torch;

namespace DiffusionCache.Formats.Diffusers;

/// <summary>Writes the float16 variant of a component's weights (<c>{stem}.fp16.safetensors</c>), as diffusers
/// checkpoints ship them, optionally removing the float32 file: halves the size of a shipped model.</summary>
public static class VariantConverter
{
    /// <summary>Writes <c>{stem}.fp16.safetensors</c> (replacing any) beside the float32 file in
    /// <paramref name="componentDir"/>: floating-point tensors as float16, others as stored. All tensors are held in
    /// memory at once. Throws <see cref="DiffusionCacheException"/> for a folder without the single float32 file or
    /// with a sharded checkpoint.</summary>
    /// <param name="componentDir">A component folder such as <c>unet/</c>.</param>
    /// <param name="keepFloat32">False deletes the float32 file once the float16 one is written.</param>
    /// <param name="stem">The weights' file stem (<c>model</c> for a transformers text encoder).</param>
    /// <returns>The sizes in bytes of the float32 file and of the float16 file written.</returns>
    public static (long BytesBefore, long BytesAfter) ToFp16(string componentDir, bool keepFloat32, string stem = DiffusersWeights.DefaultStem)
    {
        using var weights = DiffusersWeights.Open(componentDir, null, stem);
        if (weights.IndexPath is not null) throw new DiffusionCacheException($"{componentDir}: converting sharded checkpoints is not supported");
        string source = weights.FilePaths[0];
        string target = Path.Combine(componentDir, $"{stem}.fp16.safetensors");
        long before = new FileInfo(source).Length;
        var tensors = new List<KeyValuePair<string, Tensor>>();
        try
        {
            foreach (var name in weights.Names)
            {
                var t = weights.Load(name);
                tensors.Add(KeyValuePair.Create(name, t.is_floating_point() ? t.to(ScalarType.Float16) : t));
                if (t.is_floating_point()) t.Dispose();
            }
            SafetensorsWriter.Write(target, tensors, new Dictionary<string, string> { ["format"] = "pt" });
        }
        finally
        {
            foreach (var t in tensors) t.Value.Dispose();
        }
        if (!keepFloat32) File.Delete(source);
        return (before, new FileInfo(target).Length);
    }

    /// <summary>The variant to load from a folder: null when the float32 file (or index) exists, "fp16" when only
    /// the float16 variant does.</summary>
    public static string? Available(string componentDir, string stem = DiffusersWeights.DefaultStem) =>
        File.Exists(Path.Combine(componentDir, $"{stem}.safetensors")) || File.Exists(Path.Combine(componentDir, $"{stem}.safetensors.index.json"))
            ? null
            : File.Exists(Path.Combine(componentDir, $"{stem}.fp16.safetensors")) ? "fp16" : null;
}
