using System.Text.Json;
using DiffusionCache.Parity;

namespace DiffusionCache.ParityTests.Schedulers;

/// <summary>Locates shared/golden/schedulers: walk up from the test assembly to the folder holding
/// DiffusionCache.sln, then ../shared/golden.</summary>
internal static class SchedulerGolden
{
    public static string FolderPath
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "DiffusionCache.sln")))
                    return Path.GetFullPath(Path.Combine(dir.FullName, "..", "shared", "golden", "schedulers"));
            }
            throw new InvalidOperationException($"no DiffusionCache.sln above {AppContext.BaseDirectory}");
        }
    }

    private static readonly Lazy<GoldenFolder> Shared = new(() => GoldenFolder.Open(FolderPath));

    /// <summary>The folder, opened once for the test run (read-only).</summary>
    public static GoldenFolder Folder => Shared.Value;

    public static JsonElement Case(string id) =>
        Folder.Cases.Single(c => SchedulerParity.CaseId(c) == id);

    /// <summary>Ids of the cases of the given types, in manifest order.</summary>
    public static List<string> Ids(params string[] types) =>
        [.. Folder.Cases.Where(c => types.Contains(SchedulerParity.CaseType(c))).Select(SchedulerParity.CaseId)];

    public static TheoryData<string> CaseIds(params string[] types) => new(Ids(types));
}
