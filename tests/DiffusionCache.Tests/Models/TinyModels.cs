using DiffusionCache.Models.Config;
using DiffusionCache.Models.Loading;
using DiffusionCache.Models.UNets;
using DiffusionCache.Tests.TestSupport;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Models;

/// <summary>Small models and inputs for unit tests.</summary>
public static class TinyModels
{
    public static string GoldenUNet(string name) => Path.Combine(Golden.Path("unet"), "models", name);

    /// <summary>The golden SD-style 2-level model with its real (random, seeded) weights.</summary>
    public static DiffusionUNet Sd1() => UNetLoader.Load(GoldenUNet("sd1-2lvl"));

    public static UNet2DConditionConfig SdConfig() => new()
    {
        SampleSize = 8,
        BlockOutChannels = [8, 16],
        DownBlockTypes = ["CrossAttnDownBlock2D", "DownBlock2D"],
        UpBlockTypes = ["UpBlock2D", "CrossAttnUpBlock2D"],
        OnlyCrossAttention = [false, false],
        LayersPerBlock = [1, 1],
        CrossAttentionDim = [12, 12],
        TransformerLayersPerBlock = [1, 1],
        NumAttentionHeads = [2, 2],
        NormNumGroups = 4,
    };

    public static UNetInput Input(DiffusionUNet model, int batch = 2, int side = 8, long seed = 7)
    {
        var g = new TorchSharp.torch.Generator((ulong)seed);
        return new UNetInput(
            randn([batch, model.InChannels, side, side], generator: g),
            tensor(new float[] { 10, 900 }.Take(batch).ToArray()),
            model.ContextDim is int d ? randn([batch, 5, d], generator: g) : null,
            model.NumClassEmbeds is int n ? tensor(Enumerable.Range(0, batch).Select(i => (long)(i % n)).ToArray()) : null);
    }

    public static string TempDir()
    {
        string dir = Path.Combine(Path.GetTempPath(), "diffcache-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        return dir;
    }

    /// <summary>A copy of a golden model folder whose config.json is rewritten by <paramref name="edit"/>.</summary>
    public static string CopyWithConfig(string source, Func<string, string> edit)
    {
        string dir = TempDir();
        foreach (var file in Directory.GetFiles(source)) File.Copy(file, Path.Combine(dir, Path.GetFileName(file)));
        string config = Path.Combine(dir, "config.json");
        File.WriteAllText(config, edit(File.ReadAllText(config)));
        return dir;
    }
}
