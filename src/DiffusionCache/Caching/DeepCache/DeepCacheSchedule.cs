namespace DiffusionCache.Caching.DeepCache;

/// <summary>
/// Which denoising steps run the whole U-Net (full steps, which refill the cache) in DeepCache; every other step is
/// partial. Uniform 1:N: steps 0, N, 2N, ... Non-uniform 1:N: ceil(steps / N) full steps concentrated around a
/// center step c, spread by a power p, exactly as DeepCache's <c>sample_from_quad_center</c> computes them
/// (see <see cref="Select"/>). N = 1 makes every step full (ordinary sampling).
/// </summary>
public sealed class DeepCacheSchedule
{
    /// <summary>What DeepCache's search subtracts from the power when a power gives too few distinct steps.</summary>
    public const double PowStep = 0.02;

    /// <summary>The caching interval N (the "1:N" of the paper).</summary>
    public int Interval { get; }
    /// <summary>True for uniform 1:N (steps 0, N, 2N, ...); false for DeepCache's non-uniform selection around
    /// <see cref="Center"/>.</summary>
    public bool IsUniform { get; }
    /// <summary>Non-uniform only: the step the full steps concentrate around (0 &lt;= c &lt;= steps).</summary>
    public int? Center { get; }
    /// <summary>Non-uniform only: the starting power p &gt; 1 (DeepCache lowers it by 0.02 until the steps are distinct).</summary>
    public double? Pow { get; }

    private DeepCacheSchedule(int interval, bool uniform, int? center, double? pow)
    {
        if (interval < 1) throw new DiffusionCacheException($"DeepCache: cache interval N must be at least 1, got {interval}");
        if (!uniform)
        {
            if (center is not int c) throw new DiffusionCacheException("DeepCache: non-uniform selection needs a center step");
            if (pow is not double p) throw new DiffusionCacheException("DeepCache: non-uniform selection needs a power");
            if (c < 0) throw new DiffusionCacheException($"DeepCache: center must be a step index >= 0, got {c}");
            if (!double.IsFinite(p) || p <= 1)
                throw new DiffusionCacheException($"DeepCache: power must be a finite number > 1, got {p} " +
                    "(DeepCache: 'Cannot find suitable pow')");
        }
        Interval = interval;
        IsUniform = uniform;
        Center = uniform ? null : center;
        Pow = uniform ? null : pow;
    }

    /// <summary>Uniform 1:N: step i is full iff i % N == 0.</summary>
    public static DeepCacheSchedule Uniform(int interval) => new(interval, true, null, null);

    /// <summary>Non-uniform 1:N around <paramref name="center"/> with power <paramref name="pow"/> (DeepCache's SD
    /// settings: center 15, pow 1.4 for 50 steps).</summary>
    public static DeepCacheSchedule NonUniform(int interval, int center, double pow) => new(interval, false, center, pow);

    /// <summary>DeepCache's own parameters (<c>cache_interval</c>, <c>uniform</c>, <c>center</c>, <c>pow</c>);
    /// center and pow are ignored for uniform selection and required otherwise.</summary>
    public static DeepCacheSchedule Create(int interval, bool uniform, int? center, double? pow) =>
        new(interval, uniform, center, pow);

    /// <summary>The full steps for a run of <paramref name="steps"/> denoising steps.</summary>
    public IReadOnlyList<int> FullSteps(int steps) => Select(steps).FullSteps;

    /// <summary>
    /// DeepCache's <c>interval_seq</c> for <paramref name="steps"/> steps, with the search's diagnostics. Mirrors
    /// <c>sd/pipeline_stable_diffusion.py</c> in float64: n = ceil(steps / N); while p &gt; 1: a = (-c)^(1/p) (the
    /// complex principal value when c &gt; 0, as Python computes it), b = (steps - c)^(1/p), x = linspace(a, b, n + 1),
    /// v = x^p, u = unique(trunc(Re v)), candidate = [0] + (u without its smallest and largest values) + c; stop when
    /// it has n entries, else p -= 0.02. Throws when no power &gt; 1 works or the center lies outside 0..steps.
    /// </summary>
    public DeepCacheStepSelection Select(int steps)
    {
        if (steps < 1) throw new DiffusionCacheException($"DeepCache: number of steps must be at least 1, got {steps}");
        if (Interval == 1) return new DeepCacheStepSelection(steps, Interval, [.. Enumerable.Range(0, steps)]);
        if (IsUniform)
            return new DeepCacheStepSelection(steps, Interval, [.. Enumerable.Range(0, steps).Where(i => i % Interval == 0)]);

        int center = Center!.Value;
        if (center > steps)
            throw new DiffusionCacheException($"DeepCache: center {center} is outside the steps (0..{steps} for {steps} steps)");
        int slow = SlowStepCount(steps, Interval);
        var quad = QuadCenter.Sample(steps, slow, center, Pow!.Value)
            ?? throw new DiffusionCacheException($"DeepCache: no power in (1, {Pow}] gives {slow} distinct full steps for " +
                $"{steps} steps around center {center} (DeepCache: 'Cannot find suitable pow. Please adjust n_samples or decrease center.')");
        var sorted = quad.Indices.Order().ToArray();
        return new DeepCacheStepSelection(steps, Interval, sorted)
        {
            SlowStepCount = slow,
            FinalPow = quad.Pow,
            PowDecrements = quad.Decrements,
            QuadValuesReal = quad.Real,
            QuadValuesImag = quad.Imag,
        };
    }

    /// <summary>DeepCache's <c>num_slow_step</c>: ceil(steps / interval), the number of non-uniform full steps.</summary>
    public static int SlowStepCount(int steps, int interval) => steps / interval + (steps % interval != 0 ? 1 : 0);

    /// <summary>For names and logs: "uniform 1:N" or "non-uniform 1:N (center c, pow p)".</summary>
    public override string ToString() => IsUniform ? $"uniform 1:{Interval}" : $"non-uniform 1:{Interval} (center {Center}, pow {Pow})";

    /// <summary>DeepCache's <c>sample_from_quad_center</c>, evaluated as Python 3 and NumPy do it.</summary>
    private static class QuadCenter
    {
        public sealed record Result(int[] Indices, double Pow, int Decrements, double[] Real, double[] Imag);

        public static Result? Sample(int total, int samples, int center, double pow)
        {
            int decrements = 0;
            while (pow > 1)
            {
                var (re, im) = Values(total, samples, center, pow);
                // np.int32 keeps the real part and truncates toward zero; np.unique sorts and deduplicates.
                var unique = re.Select(v => (int)v).Distinct().Order().ToArray();
                int[] indices = [0, .. unique.Length > 2 ? unique[1..^1].Select(m => m + center) : []];
                if (indices.Length == samples) return new Result(indices, pow, decrements, re, im);
                pow -= PowStep;
                decrements++;
            }
            return null;
        }

        /// <summary>v_k = x_k^p for x = linspace((-c)^(1/p), (total - c)^(1/p), samples + 1).</summary>
        private static (double[] Re, double[] Im) Values(int total, int samples, int center, double pow)
        {
            double e = 1.0 / pow;
            int count = samples + 1;
            var re = new double[count];
            var im = new double[count];
            double stop = PythonPow(total - center, e);
            if (center == 0)
            {
                // (-0) ** e is the real 0.0: a real linspace and a real power.
                double step = stop / samples;
                for (int k = 0; k < count; k++)
                {
                    double x = k == samples ? stop : k * step + 0.0;
                    re[k] = RealPower(x, pow);
                }
                return (re, im);
            }

            // Python: a negative number to a fractional power is complex: |c|^e (cos(pi e) + i sin(pi e)).
            double length = Math.Pow(center, e), phase = Math.Atan2(0.0, -center) * e;
            double ar = length * Math.Cos(phase), ai = length * Math.Sin(phase);
            // np.linspace: step = (stop - start) / n with NumPy's complex division (multiply by 1/n),
            // x_k = k * step + start, x_n = stop exactly.
            double scale = 1.0 / samples;
            double sr = (stop - ar) * scale, si = (0.0 - ai) * scale;
            for (int k = 0; k < count; k++)
            {
                var (xr, xi) = k == samples ? (stop, 0.0) : (k * sr + ar, k * si + ai);
                (re[k], im[k]) = ComplexPower(xr, xi, pow);
            }
            return (re, im);
        }

        /// <summary>Python's int ** float for a non-negative base.</summary>
        private static double PythonPow(int x, double e) => x == 0 ? 0.0 : Math.Pow(x, e);

        /// <summary>NumPy's float64 array ** scalar: exponent 2 is a square, otherwise C pow.</summary>
        private static double RealPower(double x, double p) => p == 2.0 ? x * x : Math.Pow(x, p);

        /// <summary>NumPy's complex128 array ** scalar: exponent 2 is a complex square, otherwise C cpow
        /// (exp(p log|x|) (cos(p arg x) + i sin(p arg x))).</summary>
        private static (double Re, double Im) ComplexPower(double xr, double xi, double p)
        {
            if (p == 2.0) return (xr * xr - xi * xi, xr * xi + xi * xr);
            if (xr == 0 && xi == 0) return (0.0, 0.0);
            double logAbs = Math.Log(Math.Sqrt(xr * xr + xi * xi)), arg = Math.Atan2(xi, xr);
            double magnitude = Math.Exp(p * logAbs), angle = p * arg;
            return (magnitude * Math.Cos(angle), magnitude * Math.Sin(angle));
        }
    }
}

/// <summary>
/// DeepCache's full steps for one run length (<c>interval_seq</c>, sorted) and, for non-uniform selection, what the
/// power search did. Step i of the sampling loop is full iff i is in <see cref="FullSteps"/> (DeepCache's pipeline:
/// <c>i in interval_seq</c>); with N = 1 every step is full, including any extra model call a scheduler makes beyond
/// the requested steps (PNDM).
/// </summary>
/// <param name="steps">The number of denoising steps the selection is for.</param>
/// <param name="interval">The caching interval N.</param>
/// <param name="fullSteps">The full step indices, sorted.</param>
public sealed class DeepCacheStepSelection(int steps, int interval, IReadOnlyList<int> fullSteps)
{
    private readonly HashSet<int> _full = [.. fullSteps];

    /// <summary>The number of denoising steps this selection was made for.</summary>
    public int Steps => steps;
    /// <summary>The caching interval N.</summary>
    public int Interval => interval;
    /// <summary>DeepCache's <c>interval_seq</c>, sorted.</summary>
    public IReadOnlyList<int> FullSteps => fullSteps;

    /// <summary>n = ceil(steps / N), the number of full steps asked of the non-uniform search; null otherwise.</summary>
    public int? SlowStepCount { get; init; }
    /// <summary>The power the non-uniform search ended with (the start value minus 0.02 per decrement).</summary>
    public double? FinalPow { get; init; }
    /// <summary>How many times the non-uniform search lowered the power by <see cref="DeepCacheSchedule.PowStep"/>
    /// before the steps were distinct; 0 otherwise.</summary>
    public int PowDecrements { get; init; }
    /// <summary>Re and Im of v_k = x_k^p (k = 0..n) at the final power; null unless the non-uniform search ran.</summary>
    public IReadOnlyList<double>? QuadValuesReal { get; init; }
    /// <summary>Im of v_k (all 0 for center 0); see <see cref="QuadValuesReal"/>.</summary>
    public IReadOnlyList<double>? QuadValuesImag { get; init; }

    /// <summary>Whether the steps came from DeepCache's <c>sample_from_quad_center</c> (non-uniform with N &gt; 1),
    /// so that the search diagnostics are set.</summary>
    public bool UsesQuadCenter => QuadValuesReal is not null;

    /// <summary>Whether loop step <paramref name="step"/> (0-based) runs the whole U-Net. Always true for N = 1,
    /// also for steps beyond <see cref="Steps"/>.</summary>
    public bool IsFull(int step) => Interval == 1 || _full.Contains(step);

    /// <summary>The steps in 0..<see cref="Steps"/> - 1 that reuse the cache, ascending (a new list per call).
    /// </summary>
    public IReadOnlyList<int> PartialSteps => [.. Enumerable.Range(0, Steps).Where(i => !IsFull(i))];

    /// <summary>Smallest distance of Re(v_k), 0 &lt; k &lt; n, to a non-zero integer: how close truncation came to
    /// changing a step (NaN unless the non-uniform search ran).</summary>
    public double MinInteriorDistanceToInteger
    {
        get
        {
            if (QuadValuesReal is not { Count: > 2 } v) return double.NaN;
            double min = double.PositiveInfinity;
            for (int k = 1; k < v.Count - 1; k++)
            {
                double x = v[k], nearest = Math.Abs(x) < 1 ? (x < 0 ? -1 : 1) : Math.Round(x);
                min = Math.Min(min, Math.Abs(x - nearest));
            }
            return min;
        }
    }
}
