using DiffusionCache.Caching.DeepCache;

namespace DiffusionCache.Tests.Caching.DeepCache;

public class DeepCacheScheduleTests
{
    [Theory]
    [InlineData(10, 3, new[] { 0, 3, 6, 9 })]
    [InlineData(7, 2, new[] { 0, 2, 4, 6 })]
    [InlineData(5, 5, new[] { 0 })]
    [InlineData(4, 10, new[] { 0 })]
    [InlineData(1, 3, new[] { 0 })]
    public void UniformFullStepsAreMultiplesOfTheInterval(int steps, int interval, int[] full)
    {
        var selection = DeepCacheSchedule.Uniform(interval).Select(steps);
        Assert.Equal(full, selection.FullSteps);
        Assert.Equal(Enumerable.Range(0, steps).Where(i => !full.Contains(i)), selection.PartialSteps);
        Assert.All(Enumerable.Range(0, steps), i => Assert.Equal(i % interval == 0, selection.IsFull(i)));
        Assert.False(selection.UsesQuadCenter);
    }

    [Fact]
    public void IntervalOneMakesEveryStepFullForBothSelections()
    {
        foreach (var schedule in new[] { DeepCacheSchedule.Uniform(1), DeepCacheSchedule.NonUniform(1, 15, 1.4) })
        {
            var selection = schedule.Select(50);
            Assert.Equal(Enumerable.Range(0, 50), selection.FullSteps);
            Assert.Empty(selection.PartialSteps);
            Assert.True(selection.IsFull(50));   // an extra model call (PNDM) is full too
        }
    }

    [Fact]
    public void NonUniformMatchesDeepCachesStableDiffusionSetting()
    {
        // 50 steps, N = 5, center 15, pow 1.4 (supplementary Sec. C): denser around step 15, sparser late.
        var selection = DeepCacheSchedule.NonUniform(5, 15, 1.4).Select(50);
        Assert.Equal([0, 5, 9, 13, 17, 21, 26, 31, 37, 43], selection.FullSteps);
        Assert.Equal(10, selection.SlowStepCount);
        Assert.Equal(1.4, selection.FinalPow);
        Assert.Equal(0, selection.PowDecrements);
        Assert.Equal(11, selection.QuadValuesReal!.Count);
        Assert.False(selection.IsFull(49));
    }

    [Fact]
    public void PowerSearchLowersThePowerUntilTheStepsAreDistinct()
    {
        var selection = DeepCacheSchedule.NonUniform(2, 2, 1.4).Select(12);
        Assert.Equal([0, 2, 3, 4, 7, 9], selection.FullSteps);
        Assert.Equal(4, selection.PowDecrements);
        Assert.Equal(1.4 - 0.02 - 0.02 - 0.02 - 0.02, selection.FinalPow);
    }

    [Fact]
    public void CenterAtTheLastStepBoundaryIsAccepted()
    {
        var selection = DeepCacheSchedule.NonUniform(3, 10, 1.8).Select(10);
        Assert.Equal([0, 4, 7, 9], selection.FullSteps);
    }

    [Fact]
    public void SelectionsAreSortedDistinctInRangeAndStartAtZero()
    {
        int checkedCount = 0;
        foreach (int steps in new[] { 5, 10, 17, 25, 50, 100 })
        foreach (int interval in new[] { 2, 3, 4, 7 })
        foreach (int center in new[] { 0, steps / 4, steps / 2, steps })
        foreach (double pow in new[] { 1.1, 1.3, 1.5 })
        {
            DeepCacheStepSelection selection;
            try
            {
                selection = DeepCacheSchedule.NonUniform(interval, center, pow).Select(steps);
            }
            catch (DiffusionCacheException e)
            {
                Assert.Contains("no power", e.Message);
                continue;
            }
            var full = selection.FullSteps;
            Assert.Equal(0, full[0]);
            Assert.Equal(full.Order(), full);
            Assert.Equal(full.Count, full.Distinct().Count());
            Assert.All(full, i => Assert.InRange(i, 0, steps - 1));
            Assert.Equal((steps + interval - 1) / interval, full.Count);
            Assert.InRange(selection.FinalPow!.Value, 1.0, pow);
            checkedCount++;
        }
        Assert.True(checkedCount > 100, $"only {checkedCount} selections succeeded");
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-2)]
    public void IntervalBelowOneIsRefused(int interval)
    {
        var e = Assert.Throws<DiffusionCacheException>(() => DeepCacheSchedule.Uniform(interval));
        Assert.Contains("interval", e.Message);
        Assert.Throws<DiffusionCacheException>(() => DeepCacheSchedule.NonUniform(interval, 5, 1.4));
    }

    [Fact]
    public void CenterOutsideTheStepsIsRefused()
    {
        Assert.Contains("center", Assert.Throws<DiffusionCacheException>(() => DeepCacheSchedule.NonUniform(2, -1, 1.4)).Message);
        var schedule = DeepCacheSchedule.NonUniform(2, 11, 1.4);
        var e = Assert.Throws<DiffusionCacheException>(() => schedule.Select(10));
        Assert.Contains("center 11 is outside the steps", e.Message);
    }

    [Theory]
    [InlineData(1.0)]
    [InlineData(0.5)]
    [InlineData(double.NaN)]
    [InlineData(double.PositiveInfinity)]
    public void PowerMustBeAboveOne(double pow) =>
        Assert.Contains("power", Assert.Throws<DiffusionCacheException>(() => DeepCacheSchedule.NonUniform(5, 15, pow)).Message);

    [Fact]
    public void NonUniformNeedsCenterAndPower()
    {
        Assert.Contains("center", Assert.Throws<DiffusionCacheException>(() => DeepCacheSchedule.Create(5, false, null, 1.4)).Message);
        Assert.Contains("power", Assert.Throws<DiffusionCacheException>(() => DeepCacheSchedule.Create(5, false, 15, null)).Message);
        Assert.True(DeepCacheSchedule.Create(5, true, null, null).IsUniform);
    }

    [Fact]
    public void NoSuitablePowerIsAnError()
    {
        var e = Assert.Throws<DiffusionCacheException>(() => DeepCacheSchedule.NonUniform(2, 5, 1.4).Select(10));
        Assert.Contains("Cannot find suitable pow", e.Message);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    public void StepsBelowOneAreRefused(int steps)
    {
        Assert.Throws<DiffusionCacheException>(() => DeepCacheSchedule.Uniform(2).Select(steps));
        Assert.Throws<DiffusionCacheException>(() => DeepCacheSchedule.NonUniform(2, 0, 1.4).Select(steps));
    }
}
