using System.Text.Json;
using Microsoft.ML.Tokenizers;

namespace DiffusionCache.Models.Text;

/// <summary>
/// transformers' <c>CLIPTokenizer</c> (the Python one, with ftfy installed: openai's algorithm) as Stable Diffusion
/// pipelines call it: <c>tokenizer(text, padding="max_length", max_length=model_max_length, truncation=True)</c>.
/// Byte-level BPE with the <c>&lt;/w&gt;</c> suffix, merges and vocabulary lookup are Microsoft.ML.Tokenizers'
/// <see cref="BpeTokenizer"/>; written here is only what it lacks: CLIP's cleanup (<see cref="ClipNormalizer"/>) and
/// word regex (<see cref="ClipPreTokenizer"/>), transformers' split at special tokens, and bos/eos, truncation and padding.
/// Not covered: ftfy's repairs (curly quotes, fullwidth forms, ligatures, mojibake, control characters) and HTML entities.
/// </summary>
public sealed class ClipTokenizer
{
    /// <summary>transformers reads only the first 49152 - 256 - 2 merges (the size of openai's CLIP vocabulary).</summary>
    private const int MaxMerges = 49152 - 256 - 2;

    /// <summary>Words that CLIP's BPE cache maps to themselves, i.e. to their own id (or unk) without merging.</summary>
    private static readonly string[] CachedWords = ["<|startoftext|>", "<|endoftext|>"];

    private readonly BpeTokenizer _bpe;
    private readonly IReadOnlyDictionary<string, int> _vocab;
    private readonly string[] _specialTokens;   // longest first, as transformers' trie prefers them
    private readonly string _bos, _eos;

    private ClipTokenizer(BpeTokenizer bpe, IReadOnlyDictionary<string, int> vocab, ClipTokenizerConfig config)
    {
        _bpe = bpe;
        _vocab = vocab;
        _specialTokens = new[] { config.Bos, config.Eos, config.Unk, config.Pad }
            .Where(t => t.Length > 0).Distinct(StringComparer.Ordinal).OrderByDescending(t => t.Length).ToArray();
        (_bos, _eos) = (config.Bos, config.Eos);
        ModelMaxLength = config.ModelMaxLength;
        BosId = vocab[config.Bos];
        EosId = vocab[config.Eos];
        PadId = vocab[config.Pad];
        PadToken = config.Pad;
        VocabSize = vocab.Count;
    }

    /// <summary>Length of every encoding: bos, at most <c>ModelMaxLength - 2</c> content tokens, eos, padding.</summary>
    public int ModelMaxLength { get; }
    /// <summary>Id of the bos token (<c>&lt;|startoftext|&gt;</c>), first in every encoding.</summary>
    public long BosId { get; }
    /// <summary>Id of the eos token (<c>&lt;|endoftext|&gt;</c>), after the content.</summary>
    public long EosId { get; }
    /// <summary>Id that pads every encoding to <see cref="ModelMaxLength"/> (the eos id for SD 1.x's tokenizer,
    /// that of "!" for SDXL's second).</summary>
    public long PadId { get; }
    /// <summary>The pad token's text.</summary>
    public string PadToken { get; }
    /// <summary>Number of entries in <c>vocab.json</c>; a text encoder to pair with needs a <c>vocab_size</c> at
    /// least this large (pipelines check it).</summary>
    public int VocabSize { get; }

    /// <summary>Reads <c>vocab.json</c> and <c>merges.txt</c> (required) and <c>tokenizer_config.json</c> /
    /// <c>special_tokens_map.json</c> (optional) from a transformers tokenizer folder.</summary>
    public static ClipTokenizer Load(string folder)
    {
        if (!Directory.Exists(folder)) throw new DiffusionCacheException($"tokenizer folder {folder} not found");
        var config = ClipTokenizerConfig.Read(folder);
        string vocabPath = Path.Combine(folder, "vocab.json"), mergesPath = Path.Combine(folder, "merges.txt");
        var vocab = ReadVocab(vocabPath);
        var merges = ReadMerges(mergesPath);
        foreach (var (name, token) in new[] { ("bos", config.Bos), ("eos", config.Eos), ("unk", config.Unk), ("pad", config.Pad) })
            if (!vocab.ContainsKey(token))
                throw new DiffusionCacheException($"{vocabPath}: the {name} token \"{token}\" is not in the vocabulary");

        int unkId = vocab[config.Unk];
        var options = new BpeOptions(vocab)
        {
            Merges = merges,
            ByteLevel = true,
            EndOfWordSuffix = "</w>",
            UnknownToken = config.Unk,
            SpecialTokens = CachedWords.ToDictionary(w => w, w => vocab.GetValueOrDefault(w, unkId)),
            Normalizer = ClipNormalizer.Instance,
            PreTokenizer = ClipPreTokenizer.Instance,
        };
        try
        {
            return new ClipTokenizer(BpeTokenizer.Create(options), vocab, config);
        }
        catch (InvalidOperationException e)   // a merge whose symbols or result are not in the vocabulary
        {
            throw new DiffusionCacheException($"{mergesPath}: {e.Message} (vocabulary {vocabPath})", e);
        }
    }

    /// <summary>ids = bos + content[..ModelMaxLength-2] + eos, padded with the pad id to ModelMaxLength.</summary>
    public ClipEncoding Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var tokens = new List<string>();
        var ids = new List<long>();
        foreach (var (piece, special) in SplitAtSpecialTokens(text))
        {
            if (special)
            {
                tokens.Add(piece);
                ids.Add(_vocab[piece]);
                continue;
            }
            foreach (var t in _bpe.EncodeToTokens(piece, out _))
            {
                tokens.Add(t.Value);
                ids.Add(t.Id);
            }
        }
        int kept = Math.Min(ids.Count, ModelMaxLength - 2);
        List<long> framed = [BosId, .. ids.GetRange(0, kept), EosId];
        int numTokens = framed.Count;
        while (framed.Count < ModelMaxLength) framed.Add(PadId);
        return new ClipEncoding(framed, numTokens, ids.Count - kept, [_bos, .. tokens.GetRange(0, kept), _eos]);
    }

    /// <summary>transformers splits the raw text at every special token (bos, eos, unk, pad: "!" for SDXL's second
    /// tokenizer) before cleanup; each becomes its own id without BPE.</summary>
    private IEnumerable<(string Piece, bool Special)> SplitAtSpecialTokens(string text)
    {
        int start = 0;
        for (int i = 0; i < text.Length;)
        {
            string? special = _specialTokens.FirstOrDefault(t => text.AsSpan(i).StartsWith(t, StringComparison.Ordinal));
            if (special is null) { i++; continue; }
            if (i > start) yield return (text[start..i], false);
            yield return (special, true);
            i += special.Length;
            start = i;
        }
        if (start < text.Length) yield return (text[start..], false);
    }

    internal static JsonDocument ParseJson(string path)
    {
        try
        {
            return JsonDocument.Parse(File.ReadAllBytes(path));
        }
        catch (JsonException e)
        {
            throw new DiffusionCacheException($"{path}: not valid JSON ({e.Message})", e);
        }
    }

    private static Dictionary<string, int> ReadVocab(string path)
    {
        if (!File.Exists(path)) throw new DiffusionCacheException($"{path}: vocabulary file not found");
        using var doc = ParseJson(path);
        if (doc.RootElement.ValueKind != JsonValueKind.Object)
            throw new DiffusionCacheException($"{path}: expected a JSON object of token -> id, found {doc.RootElement.ValueKind}");
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var entry in doc.RootElement.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetInt32(out int id) || id < 0)
                throw new DiffusionCacheException($"{path}: the id of \"{entry.Name}\" must be a non-negative integer, found {entry.Value.GetRawText()}");
            vocab[entry.Name] = id;   // a repeated key: the last wins, as in Python's json
        }
        return vocab;
    }

    /// <summary>As transformers reads it: the whole file stripped, line 1 (the <c>#version</c> header) skipped,
    /// at most <see cref="MaxMerges"/> lines; rank = order. Each line is two symbols separated by whitespace.</summary>
    private static List<string> ReadMerges(string path)
    {
        if (!File.Exists(path)) throw new DiffusionCacheException($"{path}: merges file not found");
        string[] lines = File.ReadAllText(path).Trim().Split('\n');
        var merges = new List<string>();
        for (int i = 1; i < Math.Min(lines.Length, MaxMerges + 1); i++)
        {
            string[] pair = lines[i].Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            if (pair.Length == 0) continue;
            if (pair.Length != 2)
                throw new DiffusionCacheException($"{path}: line {i + 1} should be two symbols separated by a space, found \"{lines[i].Trim()}\"");
            merges.Add($"{pair[0]} {pair[1]}");
        }
        return merges;
    }
}

/// <summary>One encoded prompt, as <see cref="ClipTokenizer.Encode"/> returns it.</summary>
/// <param name="Ids">Always <see cref="ClipTokenizer.ModelMaxLength"/> ids: bos, content, eos, padding.</param>
/// <param name="NumTokens">Ids before padding, bos and eos included.</param>
/// <param name="DroppedTokens">Content tokens that truncation cut.</param>
/// <param name="Tokens">The token strings of the first <paramref name="NumTokens"/> ids (<c>&lt;/w&gt;</c> ends a
/// word).</param>
public sealed record ClipEncoding(IReadOnlyList<long> Ids, int NumTokens, int DroppedTokens, IReadOnlyList<string> Tokens)
{
    /// <summary>Whether truncation cut content tokens (the prompt did not fit <c>ModelMaxLength - 2</c>).</summary>
    public bool Truncated => DroppedTokens > 0;
}
