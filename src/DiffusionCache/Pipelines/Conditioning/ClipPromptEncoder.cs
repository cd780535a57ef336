using DiffusionCache.Models.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Pipelines.Conditioning;

/// <summary>
/// Stable Diffusion 1.x/2.x prompt encoding, as diffusers 0.27.2's <c>StableDiffusionPipeline.encode_prompt</c>:
/// each prompt is tokenized to the tokenizer's maximum length (longer prompts are truncated with a warning naming
/// how many tokens were dropped) and encoded without an attention mask; the U-Net context is the final-normalised
/// last hidden state, or with <c>clipSkip</c> k the final-normalised output of layer L-k. Embeddings are kept in a
/// small LRU per (text, clip skip), so a batch of seeds for one prompt encodes it once.
/// </summary>
/// <param name="tokenizer">The CLIP tokenizer paired with <paramref name="encoder"/>.</param>
/// <param name="encoder">The CLIP text model; it stays the caller's (not disposed with this encoder).</param>
/// <param name="cacheSize">How many encodings (per text, clip skip and kind) to keep; below 1: none.</param>
public sealed class ClipPromptEncoder(ClipTokenizer tokenizer, ClipTextModel encoder, int cacheSize = 16) : IDisposable
{
    private readonly TensorLru<(string Text, int ClipSkip, bool Sdxl)> _cache = new(cacheSize);

    /// <summary>The CLIP tokenizer prompts go through.</summary>
    public ClipTokenizer Tokenizer => tokenizer;
    /// <summary>The CLIP text model; owned by whoever made this encoder (the pipeline), not disposed by
    /// <see cref="Dispose"/>.</summary>
    public ClipTextModel Encoder => encoder;
    /// <summary>How many encodings the cache answered and how many ran the encoder.</summary>
    public (int Hits, int Misses) CacheStatistics => (_cache.Hits, _cache.Misses);

    /// <summary>Told about prompts that had to be truncated.</summary>
    public event Action<string>? Warning;

    /// <summary>[B, S, D] contexts for <paramref name="texts"/>, in the encoder's dtype and device.</summary>
    public Tensor Encode(IReadOnlyList<string> texts, int clipSkip = 0)
    {
        if (clipSkip < 0 || clipSkip >= encoder.Config.NumHiddenLayers)
            throw new DiffusionCacheException($"clip skip must be in 0..{encoder.Config.NumHiddenLayers - 1}, got {clipSkip}");
        using var scope = NewDisposeScope();
        var rows = texts.Select(t => _cache.GetOrAdd((t, clipSkip, false), () => [EncodeOne(t, clipSkip, sdxl: false).Context])[0]).ToList();
        return cat(rows, 0).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// SDXL's use of a text encoder (diffusers 0.27.2 <c>StableDiffusionXLPipeline.encode_prompt</c>): the hidden state
    /// of layer L-1-k (<c>hidden_states[-(clip_skip + 2)]</c>), not final-normalised, [B, S, D]; and the pooled output,
    /// projected when the encoder has a projection (<c>text_embeds</c>), [B, P].
    /// </summary>
    public (Tensor Hidden, Tensor Pooled) EncodeSdxl(IReadOnlyList<string> texts, int clipSkip = 0)
    {
        if (clipSkip < 0 || clipSkip + 1 >= encoder.Config.NumHiddenLayers + 1)
            throw new DiffusionCacheException($"clip skip must be in 0..{encoder.Config.NumHiddenLayers - 1}, got {clipSkip}");
        using var scope = NewDisposeScope();
        var rows = texts.Select(t => _cache.GetOrAdd((t, clipSkip, true), () =>
        {
            var (context, pooled) = EncodeOne(t, clipSkip, sdxl: true);
            return [context, pooled!];
        })).ToList();
        return (cat(rows.Select(r => r[0]).ToList(), 0).MoveToOuterDisposeScope(), cat(rows.Select(r => r[1]).ToList(), 0).MoveToOuterDisposeScope());
    }

    /// <summary>The token ids the encoder sees for <paramref name="text"/> (for inspection and parity checks).</summary>
    public ClipEncoding Tokenize(string text) => tokenizer.Encode(text);

    private (Tensor Context, Tensor? Pooled) EncodeOne(string text, int clipSkip, bool sdxl)
    {
        var encoding = tokenizer.Encode(text);
        if (encoding.Truncated)
            Warning?.Invoke($"prompt truncated: the text encoder takes {tokenizer.ModelMaxLength - 2} tokens, {encoding.DroppedTokens} were dropped " +
                $"(\"{Shorten(text)}\")");
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var ids = tensor(encoding.Ids.ToArray(), ScalarType.Int64).unsqueeze(0);
        using var output = encoder.Forward(ids, outputHiddenStates: sdxl || clipSkip > 0);
        if (sdxl)
            return (output.HiddenStates![^(clipSkip + 2)].clone().MoveToOuterDisposeScope(),
                (output.TextEmbeds ?? output.PooledOutput).clone().MoveToOuterDisposeScope());
        var context = clipSkip == 0 ? output.LastHiddenState : encoder.FinalLayerNorm(output.HiddenStates![^(clipSkip + 1)]);
        return (context.clone().MoveToOuterDisposeScope(), null);
    }

    private static string Shorten(string text) => text.Length <= 60 ? text : text[..57] + "...";

    /// <summary>Frees the cached embeddings. The text encoder is not disposed: its owner does that.</summary>
    public void Dispose() => _cache.Dispose();
}
