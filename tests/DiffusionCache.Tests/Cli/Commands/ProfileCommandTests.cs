using DiffusionCache.Caching.BlockCaching;
using DiffusionCache.Cli;
using DiffusionCache.Tests.TestSupport;

namespace DiffusionCache.Tests.Cli.Commands;

/// <summary><c>diffcache profile</c> under the runtime options: the model runs in bfloat16 on the CPU (random contexts
/// of a bare U-Net, labels through a pipeline's label encoder, both placed in the model's type) and the profile it
/// writes is finite and close to, but not the same as, the float32 one.</summary>
public sealed class ProfileCommandTests
{
    private static BlockProfile Profile(string dir, params string[] args)
    {
        Assert.Equal(0, CliApp.Run(["profile", "--steps", "4", "--conditions", "2", "--seeds", "1", "--out", dir, .. args]));
        return BlockProfile.Load(Path.Combine(dir, "profile.json"));
    }

    [Fact]
    public void A_bare_unet_profiles_in_bf16_close_to_fp32()
    {
        using var dir = new TempFolder();
        string model = Golden.Path("deepcache", "models", "tiny-sd-unet");
        var fp32 = Profile(dir.File("fp32"), "--model", model);
        var bf16 = Profile(dir.File("bf16"), "--model", model, "--dtype", "bf16", "--device", "cpu");
        Assert.Equal(fp32.Blocks, bf16.Blocks);
        var a = fp32.Mean.SelectMany(r => r.Skip(1)).ToArray();
        var b = bf16.Mean.SelectMany(r => r.Skip(1)).ToArray();
        Assert.All(b, v => Assert.True(double.IsFinite(v) && v > 0, $"L1_rel {v}"));
        Assert.NotEqual(a, b);   // the model did run in bfloat16
        for (int i = 0; i < a.Length; i++)
            Assert.True(Math.Abs(a[i] - b[i]) < 0.05 + 0.1 * a[i], $"L1_rel {a[i]:G4} (fp32) vs {b[i]:G4} (bf16)");
        Assert.True(File.Exists(Path.Combine(dir.File("bf16"), "profile.png")));
    }

    [Fact]
    public void A_class_conditional_pipeline_profiles_in_bf16()
    {
        using var dir = new TempFolder();
        var profile = Profile(dir.Path, "--model", Repository.Path("models", "fashion-ldm"), "--dtype", "bf16");
        Assert.Contains("label encoder", profile.Conditions);
        Assert.All(profile.Mean.SelectMany(r => r.Skip(1)), v => Assert.True(double.IsFinite(v) && v > 0, $"L1_rel {v}"));
    }
}
