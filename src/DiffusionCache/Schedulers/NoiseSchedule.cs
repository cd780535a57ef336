namespace DiffusionCache.Schedulers;

/// <summary>
/// The training noise schedule shared by every scheduler: betas and <c>alphas_cumprod</c>, bit for bit as diffusers
/// 0.27.2 got them from PyTorch 1.13 on CPU (the golden data's reference), without calling libtorch, whose newer
/// kernels round differently:
/// <list type="bullet">
/// <item><c>torch.linspace(start, end, n, dtype=float32)</c> is PyTorch 1.13's AVX2 kernel: float32 step
/// <c>(end - start) / (n - 1)</c>; the first half counts up from <c>start</c>, the second half down from <c>end</c>;
/// 16 elements per loop iteration as two 8-lane vectors, each lane <c>base + k * step</c> from the vector's first
/// index, the tail element by element; the compiler contracts every <c>a + b * c</c> into a fused multiply-add.
/// (Checked against the golden <c>alphas_cumprod</c> of all three schedules: without the fused multiply-adds, or
/// with the linspace of current libtorch, the <c>scaled_linear</c> values are off by one ulp in hundreds of
/// places.)</item>
/// <item><c>torch.cumprod</c> of float32 on CPU accumulates in double and rounds each partial product.</item>
/// <item>The cosine schedule is computed in double with the C library, as Python's <c>math</c> does.</item>
/// </list>
/// </summary>
internal static class NoiseSchedule
{
    public static float[] AlphasCumprod(SchedulerConfig config)
    {
        var betas = Betas(config);
        var alphasCumprod = new float[betas.Length];
        double product = 1;
        for (int i = 0; i < betas.Length; i++)
        {
            product *= 1f - betas[i];   // alphas = 1.0 - betas (float32), then cumprod in double
            alphasCumprod[i] = (float)product;
        }
        return alphasCumprod;
    }

    private static float[] Betas(SchedulerConfig c)
    {
        int n = c.NumTrainTimesteps;
        if (c.TrainedBetas is { } trained)
        {
            if (trained.Count != n)
                throw new DiffusionCacheException($"{c.ClassName}: trained_betas has {trained.Count} values but " +
                    $"num_train_timesteps = {n}");
            return [.. trained.Select(b => (float)b)];   // torch.tensor(trained_betas, dtype=float32)
        }
        switch (c.BetaSchedule)
        {
            case BetaSchedule.Linear:
                return TorchLinspace((float)c.BetaStart, (float)c.BetaEnd, n);
            case BetaSchedule.ScaledLinear:
            {
                // torch.linspace(beta_start**0.5, beta_end**0.5, n, dtype=float32) ** 2; Python's ** 0.5 is C pow,
                // and torch's ** 2 is x * x.
                var roots = TorchLinspace((float)Math.Pow(c.BetaStart, 0.5), (float)Math.Pow(c.BetaEnd, 0.5), n);
                return [.. roots.Select(r => r * r)];
            }
            default:
                return CosineBetas(n);
        }
    }

    /// <summary><c>torch.linspace(start, end, steps, dtype=float32)</c> of PyTorch 1.13 on an AVX2 CPU (see the class
    /// remarks).</summary>
    internal static float[] TorchLinspace(float start, float end, int steps)
    {
        const int lanes = 8;
        var result = new float[steps];
        if (steps == 1)
        {
            result[0] = start;
            return result;
        }
        float step = (end - start) / (steps - 1);
        int halfway = steps / 2;
        float Base(int idx) => idx < halfway
            ? MathF.FusedMultiplyAdd(step, idx, start)
            : MathF.FusedMultiplyAdd(-step, steps - idx - 1, end);
        int i = 0;
        for (; i <= steps - 2 * lanes; i += 2 * lanes)
        {
            for (int v = i; v < i + 2 * lanes; v += lanes)
            {
                float first = Base(v);
                for (int k = 0; k < lanes; k++) result[v + k] = MathF.FusedMultiplyAdd(k, step, first);
            }
        }
        for (; i < steps; i++) result[i] = Base(i);
        return result;
    }

    /// <summary>diffusers' <c>betas_for_alpha_bar</c> (Glide's cosine schedule, max_beta 0.999), in double, then
    /// <c>torch.tensor(betas, dtype=float32)</c>.</summary>
    private static float[] CosineBetas(int n)
    {
        static double AlphaBar(double t)
        {
            double c = Math.Cos((t + 0.008) / 1.008 * Math.PI / 2);
            return c * c;   // Python's ** 2 on a float is exact squaring
        }
        var betas = new float[n];
        for (int i = 0; i < n; i++)
        {
            double t1 = (double)i / n, t2 = (double)(i + 1) / n;
            betas[i] = (float)Math.Min(1 - AlphaBar(t2) / AlphaBar(t1), 0.999);
        }
        return betas;
    }

    /// <summary>Training sigmas <c>((1 - alphas_cumprod) / alphas_cumprod) ** 0.5</c>, float32 elementwise as torch
    /// computes them (every operation correctly rounded).</summary>
    public static float[] TrainingSigmas(float[] alphasCumprod) =>
        [.. alphasCumprod.Select(a => MathF.Sqrt((1f - a) / a))];
}
