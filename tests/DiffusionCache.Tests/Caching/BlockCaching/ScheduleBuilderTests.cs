using DiffusionCache.Caching.BlockCaching;

namespace DiffusionCache.Tests.Caching.BlockCaching;

public class ScheduleBuilderTests
{
    private static int[] One(double delta, params double[] mean) => ScheduleBuilder.FromMean([mean], delta)[0];

    [Fact]
    public void StepZeroAlwaysComputesWhateverItsMean() =>
        Assert.Equal([0], One(1.0, 1e9, 0.1, 0.1));

    [Fact]
    public void ReusesWhileTheChangeSinceTheComputeStepStaysWithinDelta() =>
        // acc: 0.3 reuse | 0.6 > 0.5 compute at 2, reset | 0.3 reuse | 0.6 compute at 4 | 0.1 reuse
        Assert.Equal([0, 2, 4], One(0.5, 0, 0.3, 0.3, 0.3, 0.3, 0.1));

    [Fact]
    public void AccumulatedChangeEqualToDeltaStillReuses() =>
        Assert.Equal([0, 3], One(0.5, 0, 0.25, 0.25, 0.25));

    [Fact]
    public void AccumulatesInFloat64LeftToRight() =>
        // 0.1 + 0.2 = 0.30000000000000004 > 0.3 in float64: step 2 computes.
        Assert.Equal([0, 2], One(0.3, 0, 0.1, 0.2));

    [Fact]
    public void ColumnZeroIsIgnored() =>
        Assert.Equal(One(0.5, 0, 0.3, 0.3), One(0.5, 123, 0.3, 0.3));

    [Fact]
    public void TheLastStepIsNotForcedToCompute() =>
        Assert.Equal([0], One(10, 0, 1, 1, 1, 1));

    [Fact]
    public void DeltaBelowEveryChangeComputesEveryStep() =>
        Assert.Equal([0, 1, 2, 3], One(1e-9, 0, 0.01, 0.02, 0.03));

    [Fact]
    public void InfiniteDeltaComputesOnlyStepZero() =>
        Assert.Equal([0], One(double.PositiveInfinity, 0, 5, 5));

    [Fact]
    public void AnInfiniteOrNaNChangeForcesAComputeAndRestartsTheSum()
    {
        Assert.Equal([0, 1, 3], One(0.5, 0, double.PositiveInfinity, 0.3, 0.3));
        Assert.Equal([0, 1, 3], One(0.5, 0, double.NaN, 0.3, 0.3));
    }

    [Fact]
    public void BlocksAreIndependent() =>
        Assert.Equal([[0, 1, 2], [0]], ScheduleBuilder.FromMean([[0, 1, 1], [0, 0.1, 0.1]], 0.5));

    [Theory]
    [InlineData(0.0)]
    [InlineData(-0.1)]
    [InlineData(double.NaN)]
    [InlineData(double.NegativeInfinity)]
    public void DeltaMustBePositive(double delta)
    {
        var e = Assert.Throws<DiffusionCacheException>(() => ScheduleBuilder.FromMean([[0, 0.1]], delta));
        Assert.Contains("delta must be > 0", e.Message);
    }

    [Fact]
    public void RaggedOrEmptyMeansAreRefused()
    {
        Assert.Throws<DiffusionCacheException>(() => ScheduleBuilder.FromMean([[0, 0.1], [0]], 0.1));
        Assert.Throws<DiffusionCacheException>(() => ScheduleBuilder.FromMean([], 0.1));
        Assert.Throws<DiffusionCacheException>(() => ScheduleBuilder.FromMean([[]], 0.1));
    }

    [Fact]
    public void FromProfileCarriesTheProfilesIdentityAndCountsSkippedEvaluations()
    {
        var profile = BlockProfileTests.Sample();
        var schedule = ScheduleBuilder.FromProfile(profile, 0.2);
        Assert.Equal(profile.Model, schedule.Model);
        Assert.Equal(profile.Solver, schedule.Solver);
        Assert.Equal(profile.NumInferenceSteps, schedule.NumInferenceSteps);
        Assert.Equal(profile.Blocks, schedule.Blocks);
        Assert.Equal(0.2, schedule.Delta);
        Assert.Equal([[0, 2], [0, 1, 2, 3]], schedule.ComputeSteps.Select(s => s.ToArray()).ToArray());
        Assert.Equal(6, schedule.NumComputed);
        Assert.Equal(8, schedule.NumBlockEvaluations);
        Assert.Equal(2.0 / 8, schedule.SkippedFraction);
        Assert.Equal([[true, false, true, false], [true, true, true, true]], schedule.ComputeMask());
        Assert.Equal([(0, 0, 2), (0, 2, 4), (1, 0, 1), (1, 1, 2), (1, 2, 3), (1, 3, 4)], schedule.Lifetimes());
        Assert.Throws<DiffusionCacheException>(() => ScheduleBuilder.FromProfile(profile, 0));
    }
}
