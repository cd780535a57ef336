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
public sealed class ClipPromptEncoder(ClipTokenizer tokenizer, ClipTextModel encoder, int cacheSize = 16) : IDisposable
{
    private readonly TensorLru<(string Text, int ClipSkip)> _cache = new(cacheSize);

    public ClipTokenizer Tokenizer => tokenizer;
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
        var rows = texts.Select(t => _cache.GetOrAdd((t, clipSkip), () => EncodeOne(t, clipSkip))).ToList();
        return cat(rows, 0).MoveToOuterDisposeScope();
    }

    private Tensor EncodeOne(string text, int clipSkip)
    {
        var encoding = tokenizer.Encode(text);
        if (encoding.Truncated)
            Warning?.Invoke($"prompt truncated: the text encoder takes {tokenizer.ModelMaxLength - 2} tokens, {encoding.DroppedTokens} were dropped " +
                $"(\"{Shorten(text)}\")");
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var ids = tensor(encoding.Ids.ToArray(), ScalarType.Int64).unsqueeze(0);
        using var output = encoder.Forward(ids, outputHiddenStates: clipSkip > 0);
        var context = clipSkip == 0 ? output.LastHiddenState : encoder.FinalLayerNorm(output.HiddenStates![^(clipSkip + 1)]);
        return context.clone().MoveToOuterDisposeScope();
    }

    private static string Shorten(string text) => text.Length <= 60 ? text : text[..57] + "...";

    public void Dispose() => _cache.Dispose();
}
