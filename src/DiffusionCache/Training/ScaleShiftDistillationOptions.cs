using System.Globalization;

namespace DiffusionCache.Training;

/// <summary>Which sample the teacher (the same U-Net, uncached) is evaluated on at each denoising step of a
/// scale-shift distillation.</summary>
public enum DistillationTeacher
{
    /// <summary>The paper's, as it stands (Block Caching Sec. 3.4, Fig. 5): the teacher runs on the student's current
    /// sample ("for the teacher, we use the intermediate steps from the student's trajectory as input rather than
    /// unrolling the teacher"), so its block outputs say what the blocks would compute on the sample the student
    /// actually has.</summary>
    StudentTrajectory,

    /// <summary>The alternative reading of Fig. 5's "match the teacher output per block and step": the teacher follows
    /// its own uncached trajectory from the same x_T (same solver, same step noise), and the student's block outputs
    /// at step k are matched to the teacher's at step k. The paper rejects it ("the teacher might take a different
    /// trajectory ... which then is not useful as a training target"); offered for comparison. It also penalizes the
    /// drift the cache has accumulated, which no per-step scale and shift can undo.</summary>
    OwnTrajectory,
}

/// <summary>
/// What a scale-shift distillation (<see cref="ScaleShiftDistillation"/>) optimizes: the weights of its two loss
/// terms, how far gradients reach back in time, and where the teacher runs. The defaults are the shipped
/// adjustments' training (block MSE only, one step, teacher on the student's trajectory); the others are variants for
/// comparing what the adjustment learns. Per denoising step k the loss is
/// <c>BlockLossWeight · mean_blocks MSE(block_k^student, block_k^teacher) + OutputLossWeight · MSE(ε̂_k^student,
/// ε̂_k^teacher)</c>, ε̂ the guided prediction; a trajectory's loss is the sum over its steps (reported as the mean).
/// </summary>
public sealed record ScaleShiftDistillationOptions
{
    /// <summary>The shipped adjustments' training: block loss only, <see cref="Unroll"/> 1, teacher on the student's
    /// trajectory.</summary>
    public static ScaleShiftDistillationOptions Default { get; } = new();

    /// <summary>Weight of the per-block term: the mean over the schedule's blocks of the MSE between the student's
    /// and the teacher's block output (what the cache answers vs what the block computes). Default 1; 0 with a
    /// positive <see cref="OutputLossWeight"/> trains on the output alone.</summary>
    public double BlockLossWeight { get; init; } = 1.0;

    /// <summary>Weight of the output term: the MSE between the student's and the teacher's final U-Net output after
    /// classifier-free guidance, ε_u + s (ε_c − ε_u), as the solver receives it at inference (the plain output when
    /// sampling without guidance). Guided rather than per half because the guided prediction is what moves the
    /// sample: errors e_u, e_c of the halves reach the step as e_u + s (e_c − e_u), so an error both halves share
    /// passes once while their difference is amplified s times (4 on the embedded model); per-half matching would
    /// weigh the two alike.
    /// Default 0 (the paper matches blocks only).</summary>
    public double OutputLossWeight { get; init; }

    /// <summary>K, the denoising steps one gradient reaches through. 1 (default): each step's loss is
    /// back-propagated through that step's student pass only; the sample and the cached values are constants. K &gt; 1:
    /// the steps are cut into windows of K; inside a window the sample and the cached values keep their graph, so the
    /// loss at step k also reaches the adjustment's effect at the window's earlier steps (through the sample the solver
    /// made from them and through the changes cached from them); the window's summed loss is back-propagated at its
    /// end, where sample, caches and the solver's history are detached. Memory grows about linearly with K: K
    /// student forward passes' activations are held at once.</summary>
    public int Unroll { get; init; } = 1;

    /// <summary>Where the teacher runs; <see cref="DistillationTeacher.StudentTrajectory"/> (the paper's) by
    /// default.</summary>
    public DistillationTeacher Teacher { get; init; } = DistillationTeacher.StudentTrajectory;

    /// <summary>The paper's loss plus half the guided output's MSE: the recipe that beats plain caching in FID where the
    /// paper's alone does not (<c>docs/paper/scale-shift.md</c>: at DDIM 20 on the shipped schedule and at δ = 8m), and what
    /// <c>diffcache train scaleshift</c> trains unless told otherwise.</summary>
    public static ScaleShiftDistillationOptions Recommended { get; } = new() { OutputLossWeight = 0.5 };

    /// <summary>Whether these are the <see cref="Default"/> settings.</summary>
    public bool IsDefault => this == Default;

    /// <summary>Checks the settings.</summary>
    /// <exception cref="DiffusionCacheException">A weight is negative or not finite, both weights are 0, or
    /// <see cref="Unroll"/> is below 1.</exception>
    public void Validate()
    {
        if (!double.IsFinite(BlockLossWeight) || BlockLossWeight < 0)
            throw new DiffusionCacheException($"block loss weight must be a finite number >= 0, got {F(BlockLossWeight)}");
        if (!double.IsFinite(OutputLossWeight) || OutputLossWeight < 0)
            throw new DiffusionCacheException($"output loss weight must be a finite number >= 0, got {F(OutputLossWeight)}");
        if (BlockLossWeight == 0 && OutputLossWeight == 0)
            throw new DiffusionCacheException("block and output loss weights are both 0: nothing to train");
        if (Unroll < 1) throw new DiffusionCacheException($"unroll must be at least 1 step, got {Unroll}");
        if (!Enum.IsDefined(Teacher)) throw new DiffusionCacheException($"unknown teacher mode {Teacher}");
    }

    /// <summary>The settings as metadata fields (<c>block_loss_weight</c>, <c>output_loss_weight</c>, <c>unroll</c>,
    /// <c>teacher</c>), for an adjustment file's metadata and a training job's record.</summary>
    public IReadOnlyDictionary<string, string> Describe() => new Dictionary<string, string>(StringComparer.Ordinal)
    {
        ["block_loss_weight"] = F(BlockLossWeight),
        ["output_loss_weight"] = F(OutputLossWeight),
        ["unroll"] = Unroll.ToString(CultureInfo.InvariantCulture),
        ["teacher"] = TeacherName(Teacher),
    };

    /// <summary>A short file-name tag of the settings that differ from <see cref="Default"/> (empty for the default),
    /// e.g. <c>out0.5-unroll4-own-teacher</c>: keeps the checkpoints of different variants apart.</summary>
    public string Tag => TagAgainst(Default);

    /// <summary>As <see cref="Tag"/>, naming the settings that differ from <paramref name="reference"/> (a tool's own
    /// default recipe), e.g. <c>out0</c> for the paper's loss against <see cref="Recommended"/>.</summary>
    public string TagAgainst(ScaleShiftDistillationOptions reference) => string.Join('-', new[]
    {
        BlockLossWeight != reference.BlockLossWeight ? $"block{F(BlockLossWeight)}" : null,
        OutputLossWeight != reference.OutputLossWeight ? $"out{F(OutputLossWeight)}" : null,
        Unroll != reference.Unroll ? $"unroll{Unroll.ToString(CultureInfo.InvariantCulture)}" : null,
        Teacher != reference.Teacher ? (Teacher == DistillationTeacher.OwnTrajectory ? "own-teacher" : "student-teacher") : null,
    }.Where(s => s is not null));

    /// <summary>E.g. "block 1 + output 0.5, unroll 4, teacher on the student's trajectory".</summary>
    public override string ToString() =>
        $"block {F(BlockLossWeight)} + output {F(OutputLossWeight)}, unroll {Unroll.ToString(CultureInfo.InvariantCulture)}, " +
        (Teacher == DistillationTeacher.StudentTrajectory ? "teacher on the student's trajectory" : "teacher on its own trajectory");

    /// <summary><c>student-trajectory</c> or <c>own-trajectory</c>.</summary>
    public static string TeacherName(DistillationTeacher teacher) => teacher switch
    {
        DistillationTeacher.StudentTrajectory => "student-trajectory",
        DistillationTeacher.OwnTrajectory => "own-trajectory",
        _ => throw new ArgumentOutOfRangeException(nameof(teacher)),
    };

    private static string F(double v) => v.ToString("R", CultureInfo.InvariantCulture);
}
