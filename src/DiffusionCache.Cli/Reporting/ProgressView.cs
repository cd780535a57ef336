using DiffusionCache.Training;
using Spectre.Console;

namespace DiffusionCache.Cli.Reporting;

/// <summary>Shows long work: a live progress bar on a terminal, one plain line every few seconds otherwise
/// (background jobs writing to a log file).</summary>
internal static class ProgressView
{
    public static T Run<T>(string title, long total, Func<IProgress<(long Done, string Status)>, T> work)
    {
        if (!AnsiConsole.Profile.Capabilities.Interactive || Console.IsOutputRedirected)
        {
            var last = DateTime.MinValue;
            var plain = new Progress<(long Done, string Status)>();
            var reporter = new Reporter((done, status) =>
            {
                if (done < total && DateTime.UtcNow - last < TimeSpan.FromSeconds(10)) return;
                last = DateTime.UtcNow;
                Console.WriteLine($"{title}: {done}/{total} {status}");
            });
            return work(reporter);
        }
        T result = default!;
        AnsiConsole.Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask(Markup.Escape(title), maxValue: total);
                result = work(new Reporter((done, status) =>
                {
                    task.Value = done;
                    task.Description = Markup.Escape($"{title} {status}");
                }));
            });
        return result;
    }

    public static IProgress<TrainingProgress> ForTraining(IProgress<(long Done, string Status)> inner) =>
        new Reporter<TrainingProgress>(p => inner.Report((p.Step, $"epoch {p.Epoch} loss {p.SmoothedLoss:0.0000} {p.ItemsPerSecond:0} img/s ETA {p.Remaining:hh\\:mm\\:ss}")));

    /// <summary>Reports synchronously (Progress&lt;T&gt; would post to a thread pool and reorder lines).</summary>
    private sealed class Reporter(Action<long, string> report) : IProgress<(long Done, string Status)>
    {
        public void Report((long Done, string Status) value) => report(value.Done, value.Status);
    }

    private sealed class Reporter<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
