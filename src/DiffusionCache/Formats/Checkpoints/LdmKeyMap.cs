using DiffusionCache.Models.Config;

namespace DiffusionCache.Formats.Checkpoints;

/// <summary>How a tensor of a single-file checkpoint becomes a diffusers tensor.</summary>
public enum LdmChange
{
    /// <summary>Renamed only: same values, same shape.</summary>
    None,
    /// <summary>A 1x1 convolution weight [C_out, C_in, 1, 1] (or [C_out, C_in, 1]) read as the linear weight
    /// [C_out, C_in] (the VAE mid-block attention's q, k, v and proj_out); same bytes.</summary>
    ConvToLinear,
    /// <summary>One third of a fused q/k/v projection along the first axis (OpenCLIP's <c>in_proj_weight</c> /
    /// <c>in_proj_bias</c>); <see cref="LdmTarget.Part"/> 0, 1, 2 is q, k, v.</summary>
    ThirdOfRows,
    /// <summary>A matrix stored transposed (OpenCLIP's <c>text_projection</c> [width, projection] is the linear
    /// weight [projection, width]); read whole, then transposed.</summary>
    Transpose,
}

/// <summary>A diffusers tensor that a file key supplies.</summary>
public readonly record struct LdmTarget(string Name, LdmChange Change = LdmChange.None, int Part = 0);

/// <summary>
/// The renames between the original CompVis/LDM layout of one Stable Diffusion component and diffusers/transformers
/// names, as diffusers 0.27.2 reads single files (<c>loaders/single_file_utils.py</c>: <c>convert_ldm_unet_checkpoint</c>,
/// <c>convert_ldm_vae_checkpoint</c>, the CLIP prefix removal, <c>create_text_encoder_from_open_clip_checkpoint</c>).
/// The map is a table of module pairs built from the component's config (levels, layers per block, which levels
/// have attention), each with the renames of the tensors inside it, so it works both ways: <see cref="Map"/> renames
/// a file key, <see cref="FileKey"/> names the file key a diffusers tensor comes from (for errors about missing
/// tensors). Keys are full file keys, <see cref="Prefix"/> included.
/// </summary>
public sealed class LdmKeyMap
{
    /// <summary>What the U-Net's file keys start with.</summary>
    public const string UNetPrefix = "model.diffusion_model.";
    /// <summary>What the VAE's file keys start with.</summary>
    public const string VaePrefix = "first_stage_model.";
    /// <summary>What SD 1.x text encoder keys start with (CLIP ViT-L/14, transformers layout after the
    /// prefix).</summary>
    public const string ClipPrefix = "cond_stage_model.transformer.";
    /// <summary>What SD 2.x text encoder keys start with (OpenCLIP ViT-H/14 layout).</summary>
    public const string OpenClipPrefix = "cond_stage_model.model.";
    /// <summary>What SDXL's first text encoder keys start with (CLIP ViT-L/14, transformers layout after the
    /// prefix).</summary>
    public const string SdxlClipPrefix = "conditioner.embedders.0.transformer.";
    /// <summary>What SDXL's second text encoder keys start with (OpenCLIP ViT-bigG/14 layout, with its
    /// projection).</summary>
    public const string SdxlOpenClipPrefix = "conditioner.embedders.1.model.";

    private readonly Dictionary<string, Rule> _byOriginal;
    private readonly Dictionary<string, Rule> _byDiffusers;
    private readonly Func<string, bool> _ignored;

    /// <summary>The diffusers component: <c>unet</c>, <c>vae</c>, <c>text_encoder</c> or <c>text_encoder_2</c>.</summary>
    public string Component { get; }
    /// <summary>What every file key of this component starts with.</summary>
    public string Prefix { get; }
    /// <summary>Says what the map is for in error messages (e.g. "a UNet2DConditionModel with 4 levels").</summary>
    public string Description { get; }

    private LdmKeyMap(string component, string prefix, string description, IEnumerable<Rule> rules, Func<string, bool>? ignored)
    {
        Component = component;
        Prefix = prefix;
        Description = description;
        _byOriginal = new(StringComparer.Ordinal);
        _byDiffusers = new(StringComparer.Ordinal);
        foreach (var rule in rules)
        {
            _byOriginal.Add(rule.Original, rule);
            _byDiffusers.Add(rule.Diffusers, rule);
        }
        _ignored = ignored ?? (_ => false);
    }

    /// <summary>Whether the file key belongs to this component (starts with <see cref="Prefix"/>).</summary>
    public bool Covers(string key) => key.StartsWith(Prefix, StringComparison.Ordinal);

    /// <summary>File keys of this component that hold no weight diffusers loads (e.g. SD 2.x's unused last text
    /// layer and <c>text_projection</c>).</summary>
    public bool IsIgnored(string key) => Covers(key) && _ignored(key[Prefix.Length..]);

    /// <summary>The diffusers tensors a file key supplies (one, or three for a fused q/k/v projection); null when
    /// no rule covers the key.</summary>
    public IReadOnlyList<LdmTarget>? Map(string key)
    {
        if (!Covers(key)) return null;
        var found = Find(_byOriginal, key[Prefix.Length..]);
        if (found is not var (rule, leaf)) return null;
        return rule.Leaves.Forward(leaf)?.Select(t => t with { Name = Join(rule.Diffusers, t.Name) }).ToArray();
    }

    /// <summary>The file key that holds (or would hold) the diffusers tensor <paramref name="name"/>; null when no
    /// rule covers it.</summary>
    public string? FileKey(string name)
    {
        var found = Find(_byDiffusers, name);
        if (found is not var (rule, leaf)) return null;
        return rule.Leaves.Backward(leaf) is string original ? Prefix + Join(rule.Original, original) : null;
    }

    /// <summary>The rule of the longest module path that starts <paramref name="key"/>, and the rest of the key.</summary>
    private static (Rule Rule, string Leaf)? Find(Dictionary<string, Rule> rules, string key)
    {
        for (int end = key.Length; end > 0; end = key.LastIndexOf('.', end - 1))
            if (rules.TryGetValue(key[..end], out var rule))
                return (rule, end == key.Length ? "" : key[(end + 1)..]);
        return null;
    }

    private static string Join(string module, string leaf) => leaf.Length == 0 ? module : module + "." + leaf;

    // ---- the maps ----

    /// <summary>The U-Net under <c>model.diffusion_model.</c>: <c>input_blocks</c> numbered through the down levels
    /// (conv_in, then per level its resnets, each with its attention as <c>.1</c>, then the downsampler <c>.0.op</c>),
    /// <c>middle_block.0/1/2</c>, <c>output_blocks</c> numbered through the up levels (resnet <c>.0</c>, attention
    /// <c>.1</c>, upsampler <c>.1.conv</c> or, after an attention, <c>.2.conv</c>), <c>time_embed.0/2</c>, <c>out.0/2</c>.</summary>
    public static LdmKeyMap UNet(UNet2DConditionConfig c)
    {
        ArgumentNullException.ThrowIfNull(c);
        var rules = new List<Rule>
        {
            new("time_embed.0", "time_embedding.linear_1", Leaves.Params),
            new("time_embed.2", "time_embedding.linear_2", Leaves.Params),
            new("input_blocks.0.0", "conv_in", Leaves.Params),
            new("out.2", "conv_out", Leaves.Params),
        };
        if (c.NormNumGroups is not null) rules.Add(new("out.0", "conv_norm_out", Leaves.Params));
        if (c.NumClassEmbeds is not null) rules.Add(new("label_emb", "class_embedding", Leaves.Params));
        if (c.AdditionEmbedType == "text_time")   // SDXL's pooled-text and size-ids embedding
        {
            rules.Add(new("label_emb.0.0", "add_embedding.linear_1", Leaves.Params));
            rules.Add(new("label_emb.0.2", "add_embedding.linear_2", Leaves.Params));
        }

        int n = c.BlockOutChannels.Count, input = 1;
        for (int i = 0; i < n; i++)
        {
            bool attention = c.DownBlockTypes[i] == "CrossAttnDownBlock2D";
            for (int j = 0; j < c.LayersPerBlock[i]; j++, input++)
            {
                rules.Add(new($"input_blocks.{input}.0", $"down_blocks.{i}.resnets.{j}", Leaves.UNetResnet));
                if (attention) rules.Add(new($"input_blocks.{input}.1", $"down_blocks.{i}.attentions.{j}", Leaves.Any));
            }
            if (i < n - 1) rules.Add(new($"input_blocks.{input++}.0.op", $"down_blocks.{i}.downsamplers.0.conv", Leaves.Params));
        }
        if (c.MidBlockType is not null)
        {
            rules.Add(new("middle_block.0", "mid_block.resnets.0", Leaves.UNetResnet));
            rules.Add(new("middle_block.1", "mid_block.attentions.0", Leaves.Any));
            rules.Add(new("middle_block.2", "mid_block.resnets.1", Leaves.UNetResnet));
        }
        int output = 0;
        for (int i = 0; i < n; i++)
        {
            bool attention = c.UpBlockTypes[i] == "CrossAttnUpBlock2D";
            int layers = c.LayersPerBlock[n - 1 - i] + 1;
            for (int j = 0; j < layers; j++, output++)
            {
                rules.Add(new($"output_blocks.{output}.0", $"up_blocks.{i}.resnets.{j}", Leaves.UNetResnet));
                if (attention) rules.Add(new($"output_blocks.{output}.1", $"up_blocks.{i}.attentions.{j}", Leaves.Any));
                if (j == layers - 1 && i < n - 1)
                    rules.Add(new($"output_blocks.{output}.{(attention ? 2 : 1)}.conv", $"up_blocks.{i}.upsamplers.0.conv", Leaves.Params));
            }
        }
        return new LdmKeyMap("unet", UNetPrefix,
            $"a UNet2DConditionModel with {n} levels, layers_per_block [{string.Join(", ", c.LayersPerBlock)}]", rules, null);
    }

    /// <summary>The VAE under <c>first_stage_model.</c>: <c>encoder.down.i.block.j</c>, <c>.downsample</c>,
    /// <c>decoder.up.k.block.j</c> for diffusers' up block n-1-k, <c>mid.block_1/2</c>, <c>mid.attn_1</c> (1x1 conv
    /// q/k/v/proj_out read as linear weights), <c>norm_out</c>, <c>nin_shortcut</c>.</summary>
    public static LdmKeyMap Vae(AutoencoderKLConfig c)
    {
        ArgumentNullException.ThrowIfNull(c);
        var rules = new List<Rule>();
        foreach (string part in new[] { "encoder", "decoder" })
        {
            rules.Add(new($"{part}.conv_in", $"{part}.conv_in", Leaves.Params));
            rules.Add(new($"{part}.conv_out", $"{part}.conv_out", Leaves.Params));
            rules.Add(new($"{part}.norm_out", $"{part}.conv_norm_out", Leaves.Params));
            rules.Add(new($"{part}.mid.block_1", $"{part}.mid_block.resnets.0", Leaves.VaeResnet));
            rules.Add(new($"{part}.mid.block_2", $"{part}.mid_block.resnets.1", Leaves.VaeResnet));
            if (c.MidBlockAddAttention) rules.Add(new($"{part}.mid.attn_1", $"{part}.mid_block.attentions.0", Leaves.VaeAttention));
        }
        int n = c.BlockOutChannels.Count;
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < c.LayersPerBlock; j++)
                rules.Add(new($"encoder.down.{i}.block.{j}", $"encoder.down_blocks.{i}.resnets.{j}", Leaves.VaeResnet));
            if (i < n - 1) rules.Add(new($"encoder.down.{i}.downsample.conv", $"encoder.down_blocks.{i}.downsamplers.0.conv", Leaves.Params));
        }
        for (int i = 0; i < n; i++)
        {
            int level = n - 1 - i;
            for (int j = 0; j < c.LayersPerBlock + 1; j++)
                rules.Add(new($"decoder.up.{level}.block.{j}", $"decoder.up_blocks.{i}.resnets.{j}", Leaves.VaeResnet));
            if (i < n - 1) rules.Add(new($"decoder.up.{level}.upsample.conv", $"decoder.up_blocks.{i}.upsamplers.0.conv", Leaves.Params));
        }
        if (c.UseQuantConv) rules.Add(new("quant_conv", "quant_conv", Leaves.Params));
        if (c.UsePostQuantConv) rules.Add(new("post_quant_conv", "post_quant_conv", Leaves.Params));
        return new LdmKeyMap("vae", VaePrefix, $"an AutoencoderKL with {n} levels, layers_per_block {c.LayersPerBlock}", rules, null);
    }

    /// <summary>A CLIP text model in transformers' own layout after <paramref name="prefix"/> (<c>text_model.*</c>):
    /// SD 1.x's under <c>cond_stage_model.transformer.</c> (<see cref="ClipPrefix"/>), SDXL's first encoder under
    /// <c>conditioner.embedders.0.transformer.</c> (<see cref="SdxlClipPrefix"/>). The <c>position_ids</c> buffer
    /// some files hold is renamed like the rest; the text encoder loader drops it (<c>TextEncoderLoader.IsWeight</c>).</summary>
    public static LdmKeyMap ClipText(string prefix = ClipPrefix) =>
        new("text_encoder", prefix, "a CLIPTextModel (transformers layout)", [new("text_model", "text_model", Leaves.Any)], null);

    /// <summary>An OpenCLIP text model: <c>token_embedding</c>, <c>positional_embedding</c>, <c>ln_final</c>,
    /// <c>transformer.resblocks.N</c> (<c>ln_1</c>, <c>ln_2</c>, <c>mlp.c_fc</c>, <c>mlp.c_proj</c>,
    /// <c>attn.out_proj</c>, and <c>attn.in_proj_weight/bias</c> split into q, k, v).
    /// <para>SD 2.x (<paramref name="projection"/> false, under <c>cond_stage_model.model.</c>): a CLIPTextModel; the
    /// layer after the config's last (SD 2.x uses 23 of OpenCLIP ViT-H's 24), <c>text_projection</c> and
    /// <c>logit_scale</c> are not used, as in diffusers. SDXL's second encoder (<paramref name="projection"/> true,
    /// under <c>conditioner.embedders.1.model.</c>): a CLIPTextModelWithProjection that uses every layer, and
    /// <c>text_projection</c> [width, projection] is its linear weight transposed (diffusers'
    /// <c>create_text_encoder_from_open_clip_checkpoint</c>); only <c>logit_scale</c> is not used.</para></summary>
    public static LdmKeyMap OpenClipText(ClipTextConfig c, string prefix = OpenClipPrefix, bool projection = false)
    {
        ArgumentNullException.ThrowIfNull(c);
        var rules = new List<Rule>
        {
            new("token_embedding", "text_model.embeddings.token_embedding", Leaves.Params),
            new("positional_embedding", "text_model.embeddings.position_embedding.weight", Leaves.Whole),
            new("ln_final", "text_model.final_layer_norm", Leaves.Params),
        };
        if (projection) rules.Add(new("text_projection", "text_projection.weight", Leaves.WholeTransposed));
        for (int i = 0; i < c.NumHiddenLayers; i++)
            rules.Add(new($"transformer.resblocks.{i}", $"text_model.encoder.layers.{i}", Leaves.OpenClipLayer));
        if (projection)
            return new LdmKeyMap("text_encoder_2", prefix, $"a CLIPTextModelWithProjection with {c.NumHiddenLayers} layers (from OpenCLIP)", rules,
                key => key == "logit_scale");
        string unusedLayer = $"transformer.resblocks.{c.NumHiddenLayers}.";
        return new LdmKeyMap("text_encoder", prefix, $"a CLIPTextModel with {c.NumHiddenLayers} layers (from OpenCLIP)", rules,
            key => key is "text_projection" or "logit_scale" || key.StartsWith(unusedLayer, StringComparison.Ordinal));
    }

    // ---- rules ----

    private sealed record Rule(string Original, string Diffusers, Leaves Leaves);

    /// <summary>The tensors inside one module: leaf name in the file -> leaf name(s) in diffusers, and back.</summary>
    private sealed class Leaves
    {
        private readonly bool _any;
        private readonly Dictionary<string, LdmTarget[]> _forward = new(StringComparer.Ordinal);
        private readonly Dictionary<string, string> _backward = new(StringComparer.Ordinal);

        private Leaves(bool any) => _any = any;

        /// <summary>Every tensor keeps its name (transformers' and diffusers' attention internals are the same).</summary>
        public static readonly Leaves Any = new(true);

        /// <summary>A plain layer: <c>weight</c> and <c>bias</c>.</summary>
        public static readonly Leaves Params = new Leaves(false).Module("", "");

        /// <summary>The module is itself the tensor (OpenCLIP's <c>positional_embedding</c>).</summary>
        public static readonly Leaves Whole = new Leaves(false).Leaf("", new LdmTarget(""));

        /// <summary>The module is itself the tensor, stored transposed (OpenCLIP's <c>text_projection</c>).</summary>
        public static readonly Leaves WholeTransposed = new Leaves(false).Leaf("", new LdmTarget("", LdmChange.Transpose));

        public static readonly Leaves UNetResnet = new Leaves(false).Module("in_layers.0", "norm1").Module("in_layers.2", "conv1")
            .Module("emb_layers.1", "time_emb_proj").Module("out_layers.0", "norm2").Module("out_layers.3", "conv2")
            .Module("skip_connection", "conv_shortcut");

        public static readonly Leaves VaeResnet = new Leaves(false).Module("norm1", "norm1").Module("conv1", "conv1")
            .Module("norm2", "norm2").Module("conv2", "conv2").Module("nin_shortcut", "conv_shortcut");

        public static readonly Leaves VaeAttention = new Leaves(false).Module("norm", "group_norm")
            .Linear("q", "to_q").Linear("k", "to_k").Linear("v", "to_v").Linear("proj_out", "to_out.0");

        public static readonly Leaves OpenClipLayer = new Leaves(false).Module("ln_1", "layer_norm1").Module("ln_2", "layer_norm2")
            .Module("mlp.c_fc", "mlp.fc1").Module("mlp.c_proj", "mlp.fc2").Module("attn.out_proj", "self_attn.out_proj")
            .Fused("attn.in_proj_weight", "weight").Fused("attn.in_proj_bias", "bias");

        private Leaves Leaf(string original, params LdmTarget[] targets)
        {
            _forward.Add(original, targets);
            foreach (var t in targets) _backward.Add(t.Name, original);
            return this;
        }

        /// <summary>A sub-layer's weight and bias, renamed.</summary>
        private Leaves Module(string original, string diffusers) =>
            Leaf(Sub(original, "weight"), new LdmTarget(Sub(diffusers, "weight")))
                .Leaf(Sub(original, "bias"), new LdmTarget(Sub(diffusers, "bias")));

        private static string Sub(string module, string param) => module.Length == 0 ? param : module + "." + param;

        /// <summary>A 1x1 convolution in the file, a linear layer in diffusers.</summary>
        private Leaves Linear(string original, string diffusers) =>
            Leaf(original + ".weight", new LdmTarget(diffusers + ".weight", LdmChange.ConvToLinear))
                .Leaf(original + ".bias", new LdmTarget(diffusers + ".bias"));

        /// <summary>A fused q/k/v projection in the file, three in diffusers.</summary>
        private Leaves Fused(string original, string param) => Leaf(original,
            new LdmTarget($"self_attn.q_proj.{param}", LdmChange.ThirdOfRows, 0),
            new LdmTarget($"self_attn.k_proj.{param}", LdmChange.ThirdOfRows, 1),
            new LdmTarget($"self_attn.v_proj.{param}", LdmChange.ThirdOfRows, 2));

        public IReadOnlyList<LdmTarget>? Forward(string leaf) =>
            _any ? (leaf.Length == 0 ? null : [new LdmTarget(leaf)]) : _forward.GetValueOrDefault(leaf);

        public string? Backward(string leaf) => _any ? (leaf.Length == 0 ? null : leaf) : _backward.GetValueOrDefault(leaf);
    }
}
