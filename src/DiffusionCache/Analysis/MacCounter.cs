using DiffusionCache.Models.Layers;
using DiffusionCache.Models.Seam;
using DiffusionCache.Models.UNets;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace DiffusionCache.Analysis;

/// <summary>Multiply-accumulates of one forward pass: the total, and per call site the MACs spent inside it
/// (inclusive: a down block counts its resnets' MACs too). Elementwise work (norms, activations) is not counted,
/// as is usual for MAC figures. <see cref="PassThroughBySite"/>: for residual sites, the MACs of their pass-through
/// path alone (a resnet's 1x1 <c>conv_shortcut</c>; 0 for identities), which a block cache still spends on reuse.
/// They are not part of <see cref="Total"/>.</summary>
/// <param name="Total">MACs of the whole forward pass.</param>
/// <param name="InclusiveBySite">MACs per seam call site path (e.g. <c>down_blocks.1</c>), inclusive of nested
/// sites; sites overlap, so these do not sum to <see cref="Total"/>.</param>
public sealed record MacReport(long Total, IReadOnlyDictionary<string, long> InclusiveBySite)
{
    /// <summary>Per residual call site path, the MACs of its pass-through path alone (a resnet's 1x1
    /// <c>conv_shortcut</c>, 0 for an identity): what a reused block still costs. Not part of <see cref="Total"/>.
    /// </summary>
    public IReadOnlyDictionary<string, long> PassThroughBySite { get; init; } = new Dictionary<string, long>();

    /// <summary>The inclusive MACs of the call site <paramref name="path"/>, or 0 for a site that did not run.
    /// </summary>
    public long Of(string path) => InclusiveBySite.TryGetValue(path, out var m) ? m : 0;

    /// <summary>The pass-through MACs of the call site <paramref name="path"/>, or 0 where it has none.</summary>
    public long PassThroughOf(string path) => PassThroughBySite.TryGetValue(path, out var m) ? m : 0;
}

/// <summary>
/// Counts MACs by running one forward pass with hooks on every convolution, linear layer and attention product,
/// attributing each to the seam call sites active at that moment. Counting what actually executes (rather than
/// re-deriving shapes from configs) keeps the figures right for every architecture the loader accepts.
/// </summary>
public static class MacCounter
{
    /// <summary>Runs one forward pass of <paramref name="model"/> on zeros (timestep 500, under no_grad) and
    /// counts its MACs. The model's hooks and seam are restored afterwards.</summary>
    /// <param name="model">The U-Net to measure, on the device and in the dtype it will run with.</param>
    /// <param name="batch">Batch size of the input; MACs scale linearly with it.</param>
    /// <param name="height">Latent (or pixel, for pixel-space models) height of the input.</param>
    /// <param name="width">Latent (or pixel) width of the input.</param>
    /// <param name="contextLength">Number of cross-attention context tokens (77 for CLIP); ignored by models
    /// without cross-attention.</param>
    public static MacReport Count(DiffusionUNet model, int batch, int height, int width, int contextLength = 77)
    {
        long total = 0;
        var bySite = new Dictionary<string, long>(StringComparer.Ordinal);
        var passThrough = new Dictionary<string, long>(StringComparer.Ordinal);
        var active = new Stack<string>();
        string? measuringPassThrough = null;
        void Add(long macs)
        {
            if (measuringPassThrough is not null)
            {
                passThrough[measuringPassThrough] = passThrough.GetValueOrDefault(measuringPassThrough) + macs;
                return;
            }
            total += macs;
            foreach (var path in active) bySite[path] = bySite.GetValueOrDefault(path) + macs;
        }

        var removers = new List<Action>();   // each hook type has its own HookRemover type
        // TorchSharp's named_modules() can yield a module once per ancestor; hook each module once.
        var seen = new HashSet<object>(ReferenceEqualityComparer.Instance);
        foreach (var (_, module) in model.named_modules())
        {
            if (!seen.Add(module)) continue;
            switch (module)
            {
                case Conv2d conv:
                    var r1 = conv.register_forward_hook((m, input, output) =>
                    {
                        var w = conv.weight!.shape;
                        Add(output.numel() * w[1] * w[2] * w[3]);
                        return output;
                    });
                    removers.Add(r1.remove);
                    break;
                case Linear linear:
                    var r2 = linear.register_forward_hook((m, input, output) =>
                    {
                        Add(output.numel() * linear.weight!.shape[1]);
                        return output;
                    });
                    removers.Add(r2.remove);
                    break;
                case Attention attention:
                    var r3 = attention.register_forward_hook((m, hidden, context, output) =>
                    {
                        // Q K^T and P V: two products of B x N x L x inner each.
                        long b = hidden.shape[0];
                        long n = hidden.dim() == 4 ? hidden.shape[2] * hidden.shape[3] : hidden.shape[1];
                        long l = context?.shape[1] ?? n;
                        var o = attention.Options;
                        Add(2 * b * n * l * o.Heads * o.DimHead);
                        return output;
                    });
                    removers.Add(r3.remove);
                    break;
            }
        }

        var tracker = new SiteTracker(active, (call) =>
        {
            // The pass-through path measured on its own, outside the totals (see MacReport.PassThroughBySite).
            measuringPassThrough = call.Path;
            try
            {
                passThrough[call.Path] = 0;
                using var scope = NewDisposeScope();
                call.PassThrough!(call.Input);
            }
            finally
            {
                measuringPassThrough = null;
            }
        });
        try
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            using var attached = model.Seam.Attach(tracker);
            model.Forward(model.ZeroInput(batch, height, width, contextLength));
        }
        finally
        {
            foreach (var remove in removers) remove();
        }
        return new MacReport(total, bySite) { PassThroughBySite = passThrough };
    }

    private sealed class SiteTracker(Stack<string> active, Action<BlockCall> measurePassThrough) : IBlockHook
    {
        public BlockOutput Run(BlockCall call, Func<BlockOutput> compute)
        {
            if (call.PassThrough is not null) measurePassThrough(call);
            active.Push(call.Path);
            try { return compute(); }
            finally { active.Pop(); }
        }
    }
}
