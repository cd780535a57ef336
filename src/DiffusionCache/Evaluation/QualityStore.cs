using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using DiffusionCache.Formats;
using static TorchSharp.torch;

namespace DiffusionCache.Evaluation;

/// <summary>
/// Scored quality reports kept beside their samples (<c>&lt;store&gt;/&lt;setting key&gt;/quality-&lt;scoring key&gt;.json</c>),
/// bootstrap replicates included so paired comparisons can be drawn from them later: scoring a point is most of a
/// study's work after sampling (two feature spaces × 200 bootstrap FIDs), and it needs no idle machine, so a study
/// that is killed, or run again for new timings, does not score a point twice. The scoring key covers everything the
/// figures depend on besides the samples: N, the bootstrap options, the metric networks' weights and the reference
/// sets (<see cref="ScoringKey"/>).
/// </summary>
/// <param name="samples">The store whose settings' folders hold the reports.</param>
public sealed class QualityStore(SampleStore samples)
{
    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = false,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,   // replicates may be NaN
    };

    /// <summary>The stored report of <paramref name="setting"/> under <paramref name="scoringKey"/>, replicates
    /// included; null when none is stored (or the file is damaged: it is scored again).</summary>
    public QualityReport? Load(SampleSetting setting, string scoringKey)
    {
        string path = PathOf(setting, scoringKey);
        if (!File.Exists(path)) return null;
        try
        {
            var stored = JsonSerializer.Deserialize<Stored>(File.ReadAllText(path), Json);
            return stored is null || stored.Setting != setting.Descriptor || stored.Scoring != scoringKey ? null : stored.ToReport();
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>Keeps <paramref name="report"/> (atomically: a killed write leaves no partial file).</summary>
    public void Save(SampleSetting setting, string scoringKey, QualityReport report)
    {
        ArgumentNullException.ThrowIfNull(report);
        AtomicFile.WriteAllText(PathOf(setting, scoringKey), JsonSerializer.Serialize(Stored.Of(setting.Descriptor, scoringKey, report), Json));
    }

    /// <summary>A short hash of what scores depend on besides the samples: N, the bootstrap options, the classifier's
    /// and every feature space's weights (a checksum of their parameters) and the reference features.</summary>
    public static string ScoringKey(int samples, BootstrapOptions bootstrap, MetricNetwork classifier, IReadOnlyList<FeatureSpace> spaces,
        IReadOnlyList<ReferenceFeatures> references)
    {
        string F(double x) => x.ToString("R", CultureInfo.InvariantCulture);
        string Weights(MetricNetwork network)
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            return F(network.parameters().Sum(p => p.to(ScalarType.Float64).abs().sum().item<double>()));
        }
        var text = new StringBuilder().Append(CultureInfo.InvariantCulture, $"n={samples}|bootstrap={bootstrap.Replicates},{bootstrap.Seed},{F(bootstrap.Level)}");
        text.Append(CultureInfo.InvariantCulture, $"|classifier={classifier.GetName()}:{Weights(classifier)}");
        foreach (var space in spaces) text.Append(CultureInfo.InvariantCulture, $"|space={space.Name}:{Weights(space.Network)}");
        foreach (var reference in references)
        {
            using var sum = reference.Features.sum();
            text.Append(CultureInfo.InvariantCulture, $"|reference={reference.Space}:{reference.Features.shape[0]}:{F(sum.item<double>())}");
        }
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString())))[..16];
    }

    private string PathOf(SampleSetting setting, string scoringKey) =>
        Path.Combine(samples.Folder, setting.Key, $"quality-{scoringKey}.json");

    private sealed record StoredSpace(string Space, Interval Fid, Interval Kid, double[] FidReplicates, double[] KidReplicates);

    private sealed record Stored(string Setting, string Scoring, int Samples, Interval ClassAccuracy, double[] AccuracyReplicates,
        StoredSpace[] Spaces, BootstrapOptions Bootstrap)
    {
        public static Stored Of(string setting, string scoring, QualityReport r) => new(setting, scoring, r.Samples, r.ClassAccuracy,
            [.. r.AccuracyReplicates], [.. r.Spaces.Select(s => new StoredSpace(s.Space, s.Fid, s.Kid, [.. s.FidReplicates], [.. s.KidReplicates]))],
            r.Bootstrap);

        public QualityReport ToReport() => new(Samples, ClassAccuracy,
            [.. Spaces.Select(s => new SpaceQuality(s.Space, s.Fid, s.Kid) { FidReplicates = s.FidReplicates, KidReplicates = s.KidReplicates })],
            Bootstrap) { AccuracyReplicates = AccuracyReplicates };
    }
}
