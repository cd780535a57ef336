namespace DiffusionCache.Schedulers;

/// <summary>
/// The few NumPy (1.x) routines diffusers uses to build timesteps and sigmas, reproduced operation by operation so
/// that the rounding matches: <c>arange</c> with a float step, <c>linspace</c>, <c>round</c> (half to even),
/// <c>interp</c>, and the Karras-sigma helpers of diffusers.
/// </summary>
internal static class Numpy
{
    /// <summary><c>np.arange(start, stop, step)</c> for floats: length <c>ceil((stop - start) / step)</c>; element 1
    /// is <c>start + step</c> and element i ≥ 2 is <c>start + i * ((start + step) - start)</c> (NumPy's fill).</summary>
    public static double[] Arange(double start, double stop, double step)
    {
        double length = Math.Ceiling((stop - start) / step);
        if (!(length > 0)) return [];
        var result = new double[(int)length];
        result[0] = start;
        if (result.Length == 1) return result;
        result[1] = start + step;
        double delta = result[1] - start;
        for (int i = 2; i < result.Length; i++) result[i] = start + i * delta;
        return result;
    }

    /// <summary><c>np.linspace(start, stop, num)</c> (endpoint true): <c>i * ((stop - start) / (num - 1)) + start</c>,
    /// the last element exactly <c>stop</c>; a single element is <c>start</c>.</summary>
    public static double[] Linspace(double start, double stop, int num)
    {
        var result = new double[num];
        if (num == 0) return result;
        if (num == 1)
        {
            result[0] = 0 * (stop - start) + start;
            return result;
        }
        double step = (stop - start) / (num - 1);
        for (int i = 0; i < num; i++) result[i] = i * step + start;
        result[^1] = stop;
        return result;
    }

    /// <summary><c>np.round</c>: half to even.</summary>
    public static double Round(double x) => Math.Round(x, MidpointRounding.ToEven);

    /// <summary><c>np.interp(x, np.arange(len(fp)), fp)</c> in double (fp given as float32, as diffusers passes it).
    /// Left of 0 gives fp[0], right of the last point gives the last value.</summary>
    public static double InterpAtIndex(double x, float[] fp)
    {
        int last = fp.Length - 1;
        if (x < 0) return fp[0];
        if (x >= last) return fp[last];
        int j = (int)Math.Floor(x);
        if (j == x) return fp[j];
        double slope = ((double)fp[j + 1] - fp[j]) / 1.0;
        return slope * (x - j) + fp[j];
    }

    /// <summary>diffusers' <c>_convert_to_karras</c> (rho 7): <c>(max^(1/7) + ramp * (min^(1/7) - max^(1/7))) ** 7</c>
    /// with <c>ramp = np.linspace(0, 1, n)</c>, in double.</summary>
    public static double[] KarrasSigmas(double sigmaMin, double sigmaMax, int n)
    {
        const double rho = 7.0;
        var ramp = Linspace(0, 1, n);
        double minInvRho = Math.Pow(sigmaMin, 1 / rho);
        double maxInvRho = Math.Pow(sigmaMax, 1 / rho);
        return [.. ramp.Select(r => Math.Pow(maxInvRho + r * (minInvRho - maxInvRho), rho))];
    }

    /// <summary>
    /// diffusers' <c>_sigma_to_t(sigma, log_sigmas)</c> with NumPy 1.x promotion: <c>log_sigmas</c> is float32, and a
    /// float64 scalar combined with a float32 array is computed in float32 (value-based casting), so the distances
    /// and the interpolation weight <c>w</c> are float32; <c>t = (1 - w) * low_idx + w * high_idx</c> is float64.
    /// </summary>
    public static double SigmaToT(double sigma, float[] logSigmas)
    {
        float logSigma = (float)Math.Log(Math.Max(sigma, 1e-10));
        // low_idx = cumsum(dists >= 0).argmax().clip(max=len - 2): the last index whose distance is >= 0 (the first
        // maximum of the cumulative count), 0 when there is none.
        int lowIdx = 0, count = 0, best = 0;
        for (int i = 0; i < logSigmas.Length; i++)
        {
            if (logSigma - logSigmas[i] >= 0) count++;
            if (count > best)
            {
                best = count;
                lowIdx = i;
            }
        }
        lowIdx = Math.Min(lowIdx, logSigmas.Length - 2);
        int highIdx = lowIdx + 1;
        float low = logSigmas[lowIdx], high = logSigmas[highIdx];
        float w = (low - logSigma) / (low - high);
        w = Math.Clamp(w, 0f, 1f);
        return (double)(1 - w) * lowIdx + (double)w * highIdx;
    }

    /// <summary><c>np.log</c> of a float32 array, elementwise in float32.</summary>
    public static float[] Log(float[] values) => [.. values.Select(v => MathF.Log(v))];
}
