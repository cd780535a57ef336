using System.Globalization;
using DiffusionCache.Evaluation;
using Spectre.Console;

namespace DiffusionCache.Cli.Reporting;

/// <summary>How <c>eval</c> and <c>merge</c> print an evaluation, from its rows alone (so a merge prints exactly what
/// the single-process run prints): per configuration class accuracy, FID and KID per feature space, all with their
/// intervals; the floors; then each later configuration's paired verdict against the first.</summary>
internal static class EvalTable
{
    /// <summary>One configuration's figures on one line (and its verdict on the next), as a long run finishes it.</summary>
    public static void WriteLine(EvalRow row)
    {
        string spaces = string.Join("; ", row.Spaces.Select(s => $"{s.Space}: FID {s.FidWithInterval.ToString("0.000")}, KID×10³ {Scaled(s.KidWithInterval).ToString("0.000")}"));
        Console.WriteLine($"{row.Name}: class accuracy {Percent(row.ClassAccuracyWithInterval)}, {spaces} ({row.Samples} samples, {Number(row.SamplingSeconds, "0")} s)");
        if (row.VersusFirst is { } versus) Console.WriteLine($"  {versus.Summary}");
    }

    /// <summary>The table, the note on what the figures are, and the verdict lines.</summary>
    public static void Write(IReadOnlyList<EvalRow> rows)
    {
        if (rows.Count == 0) return;
        var first = rows[0];
        var bootstrap = first.Bootstrap ?? new BootstrapOptions();
        string pct = $"{Number(bootstrap.Level * 100, "0.#")} %";
        var table = new Table().Border(TableBorder.Simple).AddColumn("samples")
            .AddColumn(new TableColumn(Markup.Escape($"class accuracy [{pct}]")).RightAligned());
        foreach (var space in first.Spaces)
            table.AddColumn(new TableColumn(Markup.Escape($"FID {space.Space} [{pct}]")).RightAligned())
                .AddColumn(new TableColumn(Markup.Escape($"KID×10³ {space.Space} [{pct}]")).RightAligned());
        table.AddColumn(new TableColumn("sampling s").RightAligned());

        foreach (var row in rows)
            AddRow(table, [row.Name, Percent(row.ClassAccuracyWithInterval),
                .. row.Spaces.SelectMany(s => new[] { s.FidWithInterval.ToString("0.000"), Scaled(s.KidWithInterval).ToString("0.000") }),
                Number(row.SamplingSeconds, "0")]);
        AddRow(table, ["floor: train set vs test", "",
            .. first.Spaces.SelectMany(s => new[] { Number(s.FidFloor, "0.000"), Number(s.KidFloor * 1e3, "0.000") }), ""]);
        AddRow(table, ["floor: test through the autoencoder vs test", "",
            .. first.Spaces.SelectMany(s => new[] { Number(s.FidFloorAutoencoder, "0.000"), Number(s.KidFloorAutoencoder * 1e3, "0.000") }), ""]);
        AddRow(table, ["classifier on the test set", Number(first.ClassifierTestAccuracy, "P2"), .. first.Spaces.SelectMany(_ => new[] { "", "" }), ""]);
        AnsiConsole.Write(table);

        Console.WriteLine($"FID and KID are measured in the metric networks' feature spaces ({string.Join(", ", first.Spaces.Select(s => s.Space))}), " +
            $"not Inception's; intervals: {pct} percentile bootstrap over the generated samples ({bootstrap.Replicates} resamples, seed " +
            $"{bootstrap.Seed}; the reference fixed), Wilson for class accuracy; KID floors on the first {EvalFloors.KidSamples} images.");
        var compared = rows.Where(r => r.VersusFirst is not null).ToList();
        if (compared.Count == 0) return;
        Console.WriteLine($"paired verdicts against the first configuration (same seeds, same resamples):");
        foreach (var row in compared)
        {
            var v = row.VersusFirst!;
            Console.WriteLine($"  {v.Summary} (class accuracy {Number(v.ClassAccuracyDifference * 100, "+0.00;-0.00;0.00")} points " +
                $"[{Number(v.ClassAccuracyDifferenceInterval[0] * 100, "0.00")}, {Number(v.ClassAccuracyDifferenceInterval[1] * 100, "0.00")}])");
        }
    }

    private static void AddRow(Table table, string[] cells) => table.AddRow([.. cells.Select(Markup.Escape)]);

    private static string Percent(Interval i) =>
        $"{Number(i.Estimate, "P2")} [{Number(i.Lower * 100, "0.00")}, {Number(i.Upper * 100, "0.00")}]";

    private static Interval Scaled(Interval i) => new(i.Estimate * 1e3, i.Lower * 1e3, i.Upper * 1e3);

    private static string Number(double value, string format) => value.ToString(format, CultureInfo.InvariantCulture);
}
