using DiffusionCache.Tests.TestSupport;
using DiffusionCache.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Tests.Training;

public class TrainingLoopTests
{
    private sealed class Regressor : nn.Module<Tensor, Tensor>
    {
        private readonly TorchSharp.Modules.Linear _a = nn.Linear(4, 8), _b = nn.Linear(8, 1);
        public Regressor() : base("regressor")
        {
            register_module("a", _a);
            register_module("b", _b);
        }
        protected override void RegisterComponents() { }
        public override Tensor forward(Tensor x) => _b.call(nn.functional.silu(_a.call(x)));
    }

    private static readonly Tensor Inputs = randn([64, 4], generator: new Generator(5));
    private static readonly Tensor Targets = Inputs.sum([1], keepdim: true).sin();

    private static TrainingOptions Options(string dir, long steps) => new()
    {
        CheckpointDir = dir, TotalSteps = steps, BatchSize = 8, LearningRate = 1e-2, WarmupSteps = 2,
        CheckpointEvery = 2, EmaDecay = 0.9, Seed = 42,
    };

    /// <summary>Noise from the job's generator makes the loss depend on the checkpointed RNG state too.</summary>
    private static TrainingLoop.LossFunction Loss(Regressor model, Func<bool>? crash = null) => (indices, generator) =>
    {
        if (crash?.Invoke() == true) throw new InvalidOperationException("simulated crash");
        var x = Inputs.index_select(0, indices);
        x = x + 0.01 * randn(x.shape, generator: generator);
        return nn.functional.mse_loss(model.call(x), Targets.index_select(0, indices));
    };

    private static (Dictionary<string, Tensor> Weights, Dictionary<string, Tensor> Ema) Train(string dir, long steps,
        Func<bool>? crash = null, CancellationToken cancel = default, Action<TrainingProgress>? onProgress = null)
    {
        // Initialise from a local generator: the global one is shared with tests running in parallel.
        var model = new Regressor();
        var init = new Generator(1);
        using (no_grad())
            foreach (var p in model.parameters()) p.copy_(0.3 * randn(p.shape, generator: init));
        var loop = new TrainingLoop(model, Inputs.shape[0], Options(dir, steps));
        using var ema = loop.Run(Loss(model, crash), onProgress is null ? null : new Callback(onProgress), cancel);
        return (model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone()),
            ema.Weights.ToDictionary(w => w.Key, w => w.Value.clone()));
    }

    private sealed class Callback(Action<TrainingProgress> action) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => action(value);
    }

    private static void AssertSame(Dictionary<string, Tensor> a, Dictionary<string, Tensor> b)
    {
        Assert.Equal(a.Keys.Order(), b.Keys.Order());
        foreach (var (name, t) in a) Assert.True(t.equal(b[name]).all().item<bool>(), name);
    }

    [Fact]
    public void ResumingAfterACrashMatchesAnUninterruptedRun()
    {
        using var straightDir = new TempFolder();
        using var crashedDir = new TempFolder();
        var straight = Train(straightDir.Path, 9);

        // Crash during step 6 (after the checkpoint at step 4): the run dies without saving.
        int calls = 0;
        Assert.Throws<InvalidOperationException>(() => Train(crashedDir.Path, 9, crash: () => ++calls == 6));
        var resumed = Train(crashedDir.Path, 9);

        AssertSame(straight.Weights, resumed.Weights);
        AssertSame(straight.Ema, resumed.Ema);
        // The log holds every step once, in order.
        var steps = File.ReadLines(Path.Combine(crashedDir.Path, "log.csv")).Skip(1).Select(l => int.Parse(l.Split(',')[0])).ToList();
        Assert.Equal(Enumerable.Range(1, 9), steps);
    }

    [Fact]
    public void CancellingSavesACheckpointToResumeFrom()
    {
        using var straightDir = new TempFolder();
        using var cancelledDir = new TempFolder();
        var straight = Train(straightDir.Path, 7);

        using var cts = new CancellationTokenSource();
        Assert.Throws<OperationCanceledException>(() =>
            Train(cancelledDir.Path, 7, cancel: cts.Token, onProgress: p => { if (p.Step == 3) cts.Cancel(); }));
        var resumed = Train(cancelledDir.Path, 7);

        AssertSame(straight.Weights, resumed.Weights);
        AssertSame(straight.Ema, resumed.Ema);
    }

    [Fact]
    public void SameSeedSameResult()
    {
        using var a = new TempFolder();
        using var b = new TempFolder();
        AssertSame(Train(a.Path, 5).Weights, Train(b.Path, 5).Weights);
    }

    [Fact]
    public void BadOptionsAreRefused()
    {
        using var dir = new TempFolder();
        var model = new Regressor();
        Assert.Throws<DiffusionCacheException>(() => new TrainingLoop(model, 64, Options(dir.Path, 0)));
        Assert.Throws<DiffusionCacheException>(() => new TrainingLoop(model, 64, Options(dir.Path, 5) with { LearningRate = double.NaN }));
        Assert.Throws<DiffusionCacheException>(() => new TrainingLoop(model, 4, Options(dir.Path, 5)));
    }
}
