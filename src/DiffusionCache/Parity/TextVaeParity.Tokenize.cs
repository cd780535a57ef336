using System.Text.Json;
using DiffusionCache.Models.Text;

namespace DiffusionCache.Parity;

public sealed partial class TextVaeParity
{
    /// <summary>The folder's tokenizer, loaded once per suite (the real CLIP vocabulary is 49408 entries).</summary>
    private ClipTokenizer? _tokenizer;

    /// <summary>A <c>tokenize</c> case: ids, token count, truncation and token strings must all match exactly.</summary>
    private ParityResult RunTokenize(GoldenFolder folder, JsonElement @case)
    {
        string id = CaseId(@case);
        try
        {
            _tokenizer ??= ClipTokenizer.Load(folder.Resolve(folder.Manifest.GetProperty("tokenizer").GetString()!));
            var encoding = _tokenizer.Encode(@case.GetProperty("text").GetString()!);
            var check = new CaseCheck(id, new Tolerance(0, 0));
            check.Exact("input_ids", encoding.Ids, @case.GetProperty("input_ids").EnumerateArray().Select(e => e.GetInt64()).ToArray());
            check.Exact("num_tokens", [encoding.NumTokens], [@case.GetProperty("num_tokens").GetInt32()]);
            check.Exact("truncated", [encoding.Truncated], [@case.GetProperty("truncated").GetBoolean()]);
            check.Exact("tokens", encoding.Tokens, @case.GetProperty("tokens").EnumerateArray().Select(e => e.GetString()!).ToArray());
            return check.Result();
        }
        catch (Exception e) when (e is DiffusionCacheException or KeyNotFoundException or InvalidOperationException)
        {
            return new ParityResult(id, double.PositiveInfinity, false, e.Message);
        }
    }
}
