using System.Text.Json;
using DiffusionCache.Formats.Safetensors;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Training;

/// <summary>
/// A resumable snapshot of a training job in <c>{dir}/checkpoint/</c>: model and EMA weights (safetensors), the
/// optimizer state, the noise generator's state and the step. Written to a fresh folder first and swapped in by
/// rename, so an interrupted save leaves the previous checkpoint intact.
/// </summary>
internal static class TrainingCheckpoint
{
    private const string Folder = "checkpoint";

    public sealed record State(long Step, long EmaUpdates, double ElapsedSeconds);

    public static bool Exists(string dir) => File.Exists(Path.Combine(dir, Folder, "state.json"));

    public static void Save(string dir, nn.Module model, ExponentialMovingAverage ema, optim.Optimizer optimizer,
        Generator generator, State state)
    {
        Directory.CreateDirectory(dir);
        string final = Path.Combine(dir, Folder);
        string temp = Path.Combine(dir, $"{Folder}.tmp-{Environment.ProcessId}");
        if (Directory.Exists(temp)) Directory.Delete(temp, true);
        Directory.CreateDirectory(temp);
        try
        {
            SafetensorsWriter.Write(Path.Combine(temp, "model.safetensors"),
                model.named_parameters().Select(p => KeyValuePair.Create(p.name, (Tensor)p.parameter)));
            SafetensorsWriter.Write(Path.Combine(temp, "ema.safetensors"), ema.Weights);
            using (var rng = generator.get_state())
                SafetensorsWriter.Write(Path.Combine(temp, "rng.safetensors"), [KeyValuePair.Create("generator", rng)]);
            using (var stream = File.Create(Path.Combine(temp, "optimizer.bin")))
            using (var writer = new BinaryWriter(stream))
                SaveOptimizer(optimizer, writer);
            File.WriteAllText(Path.Combine(temp, "state.json"), JsonSerializer.Serialize(state));

            string old = Path.Combine(dir, $"{Folder}.old");
            if (Directory.Exists(old)) Directory.Delete(old, true);
            if (Directory.Exists(final)) Directory.Move(final, old);
            Directory.Move(temp, final);
            if (Directory.Exists(old)) Directory.Delete(old, true);
        }
        catch
        {
            if (Directory.Exists(temp)) Directory.Delete(temp, true);
            throw;
        }
    }

    public static State Load(string dir, nn.Module model, ExponentialMovingAverage ema, optim.Optimizer optimizer, Generator generator)
    {
        string folder = Path.Combine(dir, Folder);
        var state = JsonSerializer.Deserialize<State>(File.ReadAllText(Path.Combine(folder, "state.json")))
            ?? throw new DiffusionCacheException($"{folder}/state.json is empty");
        using (var file = SafetensorsFile.Open(Path.Combine(folder, "model.safetensors")))
        using (no_grad())
            foreach (var (name, p) in model.named_parameters())
            {
                using var w = file.Load(name);
                p.copy_(w);
            }
        using (var file = SafetensorsFile.Open(Path.Combine(folder, "ema.safetensors")))
        {
            var weights = file.Entries.ToDictionary(e => e.Name, e => file.Load(e.Name));
            try { ema.Load(weights, state.EmaUpdates); }
            finally { foreach (var w in weights.Values) w.Dispose(); }
        }
        using (var file = SafetensorsFile.Open(Path.Combine(folder, "rng.safetensors")))
        using (var rng = file.Load("generator"))
            generator.set_state(rng);
        using (var stream = File.OpenRead(Path.Combine(folder, "optimizer.bin")))
        using (var reader = new BinaryReader(stream))
            LoadOptimizer(optimizer, reader);
        return state;
    }

    private static void SaveOptimizer(optim.Optimizer optimizer, BinaryWriter writer)
    {
        if (optimizer is not TorchSharp.Modules.AdamW adamw) throw new InvalidOperationException("only AdamW state is saved");
        adamw.save_state_dict(writer);
    }

    private static void LoadOptimizer(optim.Optimizer optimizer, BinaryReader reader)
    {
        if (optimizer is not TorchSharp.Modules.AdamW adamw) throw new InvalidOperationException("only AdamW state is loaded");
        adamw.load_state_dict(reader);
    }
}
