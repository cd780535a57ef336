using System.Text.Json;
using DiffusionCache.Caching.BlockCaching;
using DiffusionCache.Cli;
using DiffusionCache.Formats.Safetensors;
using DiffusionCache.Models.Conditioning;
using DiffusionCache.Parity;
using DiffusionCache.Pipelines;
using DiffusionCache.Tests.TestSupport;
using TorchSharp;

namespace DiffusionCache.ParityTests.Caching;

/// <summary>
/// <c>diffcache profile</c> and <c>diffcache schedule</c>, run through the CLI's own command tree on the golden tiny
/// model with a golden profile case's settings and inputs (<c>--inputs</c>): the written profile matches the case's
/// L1_rel, mean and std, and the schedules written from it match every schedule case of that profile exactly.
/// </summary>
public sealed class BlockCacheCliTests
{
    private const string ProfileCaseId = "profile-transformer2d-n10-ddim";

    [Fact]
    public void ProfileAndScheduleCommandsReproduceTheGoldenCases()
    {
        using var folder = GoldenFolder.Open(Golden.Path("blockcache"));
        var @case = folder.Cases.Single(c => GoldenFolder.CaseId(c) == ProfileCaseId);
        string model = folder.Resolve(folder.Manifest.GetProperty("models").GetProperty(@case.GetProperty("model").GetString()!)
            .GetProperty("path").GetString()!);
        string inputs = folder.Resolve(@case.GetProperty("tensors").GetString()!);
        using var dir = new TempFolder();

        int rc = CliApp.Run("profile", "--model", model,
            "--steps", @case.GetProperty("num_inference_steps").GetInt32().ToString(),
            "--conditions", @case.GetProperty("num_conditions").GetInt32().ToString(),
            "--seeds", @case.GetProperty("num_seeds").GetInt32().ToString(),
            "--guidance", @case.GetProperty("guidance_scale").GetDouble().ToString("R", System.Globalization.CultureInfo.InvariantCulture),
            "--targets", @case.GetProperty("targets").GetString()!,
            "--inputs", inputs, "--out", dir.Path);
        Assert.Equal(0, rc);

        var profile = BlockProfile.Load(dir.File("profile.json"));
        Assert.Equal(@case.GetProperty("blocks").EnumerateArray().Select(b => b.GetString()), profile.Blocks);
        Assert.Equal(@case.GetProperty("timesteps").EnumerateArray().Select(t => t.GetDouble()), profile.Timesteps);
        var tolerance = Tolerance.FromCase(@case);
        using (var file = SafetensorsFile.Open(inputs))
        {
            for (int g = 0; g < profile.Generations.Count; g++) Matches(tolerance, file, $"l1rel.{g}", profile.Generations[g].L1Rel);
            Matches(tolerance, file, "mean", profile.Mean);
            Matches(tolerance, file, "std", profile.Std);
        }
        Assert.Equal(1 + profile.Blocks.Count * profile.Steps, File.ReadAllLines(dir.File("profile.csv")).Length);
        AssertPng(dir.File("profile.png"));

        var scheduleCases = folder.Cases.Where(c => SchedulerParity.CaseType(c) == BlockCacheParity.ScheduleCase
            && c.GetProperty("profile").GetString() == ProfileCaseId).ToList();
        Assert.NotEmpty(scheduleCases);
        foreach (var scheduleCase in scheduleCases)
        {
            double delta = scheduleCase.GetProperty("delta").GetDouble();
            string output = dir.File($"schedule-{GoldenFolder.CaseId(scheduleCase)}.json");
            rc = CliApp.Run("schedule", "--profile", dir.File("profile.json"),
                "--delta", delta.ToString("R", System.Globalization.CultureInfo.InvariantCulture), "--out", output);
            Assert.Equal(0, rc);
            var schedule = CacheSchedule.Load(output);
            Assert.Equal(profile.Blocks, schedule.Blocks);
            Assert.Equal(delta, schedule.Delta);
            var expected = scheduleCase.GetProperty("compute_steps").EnumerateArray()
                .Select(l => l.EnumerateArray().Select(k => k.GetInt32()).ToArray()).ToArray();
            Assert.Equal(expected, schedule.ComputeSteps.Select(s => s.ToArray()).ToArray());
            Assert.Equal(scheduleCase.GetProperty("skipped_fraction").GetDouble(), schedule.SkippedFraction, 12);
            AssertPng(Path.ChangeExtension(output, ".png"));
        }
    }

    [Fact]
    public void BadArgumentsFailWithoutWritingAnything()
    {
        using var dir = new TempFolder();
        string model = Golden.Path("blockcache", "models", "tiny-sd-unet-bc");
        Assert.NotEqual(0, CliApp.Run("profile", "--model", model, "--steps", "4", "--conditions", "9", "--seeds", "1",
            "--inputs", Golden.Path("blockcache", "cases", $"{ProfileCaseId}.safetensors"), "--out", dir.File("p")));
        Assert.NotEqual(0, CliApp.Run("schedule", "--profile", dir.File("missing.json"), "--delta", "0.1", "--out", dir.File("s.json")));
        Assert.NotEqual(0, CliApp.Run("schedule", "--profile", dir.File("missing.json"), "--delta", "0", "--out", dir.File("s.json")));
        Assert.Empty(Directory.EnumerateFileSystemEntries(dir.Path));
    }

    [Fact]
    public void WithoutInputsABareUNetGetsRandomContextsAndAPipelineItsLabels()
    {
        using var dir = new TempFolder();
        string model = Golden.Path("blockcache", "models", "tiny-sd-unet-bc");
        Assert.Equal(0, CliApp.Run("profile", "--model", model, "--steps", "3", "--conditions", "2", "--seeds", "1",
            "--context-length", "5", "--targets", "resnet2d", "--out", dir.File("bare")));
        var bare = BlockProfile.Load(Path.Combine(dir.File("bare"), "profile.json"));
        Assert.StartsWith("random N(0,1) contexts [1,5,16]", bare.Conditions);
        Assert.Equal((2, 17, 5), (bare.Generations.Count, bare.Blocks.Count, bare.ContextLength));

        // A class-conditional pipeline folder: the golden U-Net with a label encoder beside it.
        string pipeline = dir.File("pipeline");
        Directory.CreateDirectory(Path.Combine(pipeline, "unet"));
        foreach (var f in Directory.GetFiles(model)) File.Copy(f, Path.Combine(pipeline, "unet", Path.GetFileName(f)));
        using (var encoder = new LabelEncoder(new LabelEncoderConfig(NumLabels: 4, TokensPerLabel: 2, EmbeddingDim: 16)))
            LatentPipelineFolder.WriteComponent(pipeline, "label_encoder", encoder.Config.ToJson(), encoder);
        LatentPipelineFolder.WriteScheduler(pipeline, File.ReadAllText(Path.Combine(model, "scheduler_config.json")));
        LatentPipelineFolder.WriteIndex(pipeline, "DDIMScheduler");
        Assert.Equal(0, CliApp.Run("profile", "--model", pipeline, "--steps", "3", "--conditions", "3", "--seeds", "2", "--out", dir.File("labels")));
        var labels = BlockProfile.Load(Path.Combine(dir.File("labels"), "profile.json"));
        Assert.StartsWith("class labels 0..2", labels.Conditions);
        Assert.Equal(("pipeline", 6, 2), (labels.Model, labels.Generations.Count, labels.ContextLength));
        Assert.NotEqual(labels.Generations[0].L1Rel[0][1], labels.Generations[2].L1Rel[0][1]);   // conditions differ
        Assert.Equal(0, CliApp.Run("schedule", "--profile", Path.Combine(dir.File("labels"), "profile.json"), "--delta", "0.3", "--out", Path.Combine(dir.File("labels"), "s.json")));
        Assert.NotEqual(0, CliApp.Run("profile", "--model", pipeline, "--steps", "3", "--conditions", "5", "--seeds", "1", "--out", dir.File("x")));
    }

    private static void Matches(Tolerance tolerance, SafetensorsFile file, string name, double[][] actual)
    {
        using var expected = file.Load(name);
        using var tensor = torch.tensor(actual.SelectMany(r => r).ToArray(), [actual.Length, actual[0].Length], torch.ScalarType.Float64);
        var (max, passed) = tolerance.Compare(tensor, expected);
        Assert.True(passed, $"{name}: max abs error {max:G3}");
    }

    private static void AssertPng(string path)
    {
        var bytes = File.ReadAllBytes(path);
        Assert.True(bytes.Length > 1000 && bytes[1] == 'P' && bytes[2] == 'N' && bytes[3] == 'G', $"{path} is not a PNG");
    }
}
