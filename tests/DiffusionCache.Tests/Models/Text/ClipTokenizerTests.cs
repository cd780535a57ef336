using System.Text.Json;
using System.Text.Json.Nodes;
using DiffusionCache.Models.Text;
using DiffusionCache.Tests.TestSupport;

namespace DiffusionCache.Tests.Models.Text;

public class ClipTokenizerTests
{
    private const long Bos = 49406, Eos = 49407;

    /// <summary>The real CLIP ViT-L/14 tokenizer (49408 ids), pad = &lt;|endoftext|&gt;.</summary>
    private static readonly Lazy<ClipTokenizer> Clip = new(() => ClipTokenizer.Load(Golden.Path("textvae", "tokenizer")));

    /// <summary>SDXL's tokenizer_2: the same vocabulary, pad = "!" (id 0).</summary>
    private static readonly Lazy<ClipTokenizer> PadBang = new(() =>
        ClipTokenizer.Load(Golden.Path("sdxl", "models", "sdxl-tiny", "tokenizer_2")));

    private static string TinyFolder => Golden.Path("sdxl", "models", "sd1-tiny", "tokenizer");

    private static readonly Lazy<Dictionary<string, JsonElement>> Cases = new(() =>
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Golden.Path("textvae", "manifest.json")));
        return doc.RootElement.GetProperty("cases").EnumerateArray()
            .Where(c => c.GetProperty("kind").GetString() == "tokenize")
            .ToDictionary(c => c.GetProperty("id").GetString()!, c => c.Clone());
    });

    public static TheoryData<string> TokenizeCaseIds()
    {
        var ids = new TheoryData<string>();
        foreach (string id in Cases.Value.Keys) ids.Add(id);
        return ids;
    }

    [Theory]
    [MemberData(nameof(TokenizeCaseIds))]
    public void MatchesTransformersOnGoldenCase(string id)
    {
        var c = Cases.Value[id];
        var e = Clip.Value.Encode(c.GetProperty("text").GetString()!);
        Assert.Equal(c.GetProperty("input_ids").EnumerateArray().Select(x => x.GetInt64()), e.Ids);
        Assert.Equal(c.GetProperty("num_tokens").GetInt32(), e.NumTokens);
        Assert.Equal(c.GetProperty("truncated").GetBoolean(), e.Truncated);
        Assert.Equal(c.GetProperty("tokens").EnumerateArray().Select(x => x.GetString()), e.Tokens);
    }

    [Fact]
    public void ReadsTheSpecialTokensAndLength()
    {
        var t = Clip.Value;
        Assert.Equal((77, Bos, Eos, Eos, "<|endoftext|>", 49408), (t.ModelMaxLength, t.BosId, t.EosId, t.PadId, t.PadToken, t.VocabSize));
        var p = PadBang.Value;
        Assert.Equal((Bos, Eos, 0L, "!"), (p.BosId, p.EosId, p.PadId, p.PadToken));
    }

    [Theory]
    [InlineData("wow!!", new long[] { 2781, 0, 0 }, new[] { "wow</w>", "!", "!" })]
    [InlineData("a! b", new long[] { 320, 0, 321 }, new[] { "a</w>", "!", "b</w>" })]
    [InlineData("hello!!! what?? no!?", new long[] { 3306, 0, 0, 0, 768, 2197, 871, 0, 286 },
        new[] { "hello</w>", "!", "!", "!", "what</w>", "??</w>", "no</w>", "!", "?</w>" })]
    // From the SDXL golden encode-prompt tensors (input_ids.negative.2 of enc-clip-skip1-long).
    [InlineData("extra propellers!", new long[] { 4231, 19123, 19010, 0 }, new[] { "extra</w>", "prop", "ellers</w>", "!" })]
    public void APadTokenThatIsNotBosEosOrUnkIsSplitOffWithoutBpe(string text, long[] content, string[] tokens)
    {
        var e = PadBang.Value.Encode(text);
        Assert.Equal([Bos, .. content, Eos, .. Enumerable.Repeat(0L, 75 - content.Length)], e.Ids);
        Assert.Equal(["<|startoftext|>", .. tokens, "<|endoftext|>"], e.Tokens);
    }

    [Theory]
    [InlineData("wow!!", new long[] { 2781, 748 }, new[] { "wow</w>", "!!</w>" })]
    [InlineData("a! b", new long[] { 320, 256, 321 }, new[] { "a</w>", "!</w>", "b</w>" })]
    public void AnEndOfTextPadLeavesTheBangToBpe(string text, long[] content, string[] tokens)
    {
        var e = Clip.Value.Encode(text);
        Assert.Equal([Bos, .. content, .. Enumerable.Repeat(Eos, 76 - content.Length)], e.Ids);
        Assert.Equal(["<|startoftext|>", .. tokens, "<|endoftext|>"], e.Tokens);
    }

    /// <summary>Beyond the golden strings, expected values from openai's algorithm in Python (<c>regex</c> module,
    /// <c>str.lower()</c>) with transformers' special-token split.</summary>
    [Theory]
    [InlineData("中𠀀文", "ä¸ Ń ð ł Ģ Ģ æĸ ĩ</w>")]          // an astral letter stays inside the \p{L} run
    [InlineData("𠀀!", "ð ł Ģ Ģ</w> !</w>")]                  // and ends it before punctuation
    [InlineData("🏳️\u200d🌈", "ðŁı³ï¸ıâĢįðŁĮĪ</w>")]           // an emoji ZWJ sequence is one symbol run
    [InlineData("𝟎𝟏", "ðĿ Ł İ</w> ðĿ Ł ı</w>")]               // astral digits: one word each
    [InlineData("ΟΔΟΣ ΟΔΟΣΑ", "Î ¿ Î ´ Î ¿ Ï Ĥ</w> Î ¿ Î ´ Î ¿ Ï ĥ Î ±</w>")]   // final sigma only at the word's end
    [InlineData("İstanbul", "i</w> Ìĩ</w> stanbul</w>")]       // Python lowers U+0130 to "i" + U+0307
    [InlineData("a\u0345b", "a</w> b</w>")]                    // U+0345 matches no alternative under IGNORECASE
    [InlineData("it'ſ", "it</w> ' Å ¿</w>")]                   // 'ſ matches 's under IGNORECASE
    [InlineData("<|ENDOFTEXT|>", "<|endoftext|>")]             // lowercased, then CLIP's BPE cache maps it to its id
    [InlineData("a<|endoftext|>b", "a</w> <|endoftext|> b</w>")]
    [InlineData("x\u00a0\u3000y \x1c", "x</w> y</w>")]          // Unicode whitespace; str.strip() also drops U+001C
    public void MatchesTheReferenceAlgorithmOnUnicodeEdges(string text, string tokens)
    {
        var e = Clip.Value.Encode(text);
        Assert.Equal(["<|startoftext|>", .. tokens.Split(' '), "<|endoftext|>"], e.Tokens);
    }

    [Fact]
    public void IdsAreTheVocabularyIdsOfTheTokens()
    {
        var e = Clip.Value.Encode("<|ENDOFTEXT|> İstanbul");
        Assert.Equal([Bos, Eos, 328, 16384, 11231, Eos], e.Ids.Take(e.NumTokens));
    }

    [Theory]
    [InlineData(100, 25)]
    [InlineData(76, 1)]
    [InlineData(75, 0)]
    [InlineData(3, 0)]
    public void TruncationKeepsTheFirst75TokensAndCountsTheRest(int repeats, int dropped)
    {
        var e = Clip.Value.Encode(string.Join(" ", Enumerable.Repeat("cat", repeats)));
        int kept = repeats - dropped;
        Assert.Equal(dropped, e.DroppedTokens);
        Assert.Equal(dropped > 0, e.Truncated);
        Assert.Equal(kept + 2, e.NumTokens);
        Assert.Equal([Bos, .. Enumerable.Repeat(2368L, kept), .. Enumerable.Repeat(Eos, 76 - kept)], e.Ids);
        Assert.Equal(kept + 2, e.Tokens.Count);
    }

    [Fact]
    public void TheTinyVocabularyCoversEveryByteSoAstralTextNeverThrows()
    {
        var tiny = ClipTokenizer.Load(TinyFolder);
        Assert.Equal((1000, 998L, 999L, 999L), (tiny.VocabSize, tiny.BosId, tiny.EosId, tiny.PadId));
        var e = tiny.Encode("🐱 猫 𠀀");
        Assert.Equal([998, 558, 238, 365, 163, 234, 360, 172, 254, 222, 478, 999], e.Ids.Take(e.NumTokens));
    }

    [Fact]
    public void ASymbolMissingFromTheVocabularyBecomesUnk()
    {
        // The tiny vocabulary has every byte symbol; without "x</w>" (which no merge uses) a final "x" is unknown.
        string dir = CopyTiny("vocab.json", s =>
        {
            var vocab = JsonNode.Parse(s)!.AsObject();
            Assert.True(vocab.Remove("x</w>"));
            return vocab.ToJsonString();
        });
        var tiny = ClipTokenizer.Load(dir);
        var e = tiny.Encode("a x b");
        Assert.Equal(5, e.NumTokens);   // not dropped: bos, a, unk, b, eos
        Assert.Equal([998, 320, 999, 321, 999], e.Ids.Take(5));
        Assert.Equal("<|endoftext|>", e.Tokens[2]);
    }

    [Fact]
    public void AnAbsurdOrMissingModelMaxLengthMeans77()
    {
        string dir = CopyTiny("tokenizer_config.json", s => s.Replace("\"model_max_length\": 77", "\"model_max_length\": 1000000000000000019884624838656"));
        Assert.Equal(77, ClipTokenizer.Load(dir).ModelMaxLength);
        string shorter = CopyTiny("tokenizer_config.json", s => s.Replace("\"model_max_length\": 77", "\"model_max_length\": 8"));
        var e = ClipTokenizer.Load(shorter).Encode("a b c d e f g h i");
        Assert.Equal((8, 8, 3), (e.Ids.Count, e.NumTokens, e.DroppedTokens));
        string none = CopyTiny("tokenizer_config.json", null);
        File.Delete(Path.Combine(none, "tokenizer_config.json"));
        File.Delete(Path.Combine(none, "special_tokens_map.json"));
        var defaults = ClipTokenizer.Load(none);   // CLIPTokenizer's defaults
        Assert.Equal((77, 998L, 999L, 999L), (defaults.ModelMaxLength, defaults.BosId, defaults.EosId, defaults.PadId));
    }

    [Fact]
    public void SpecialTokensMapOverridesTheConfig()
    {
        string dir = CopyTiny("special_tokens_map.json", s => s.Replace("\"pad_token\": \"<|endoftext|>\"", "\"pad_token\": \"!\""));
        var t = ClipTokenizer.Load(dir);
        Assert.Equal((0L, "!"), (t.PadId, t.PadToken));
    }

    [Fact]
    public void AMissingFolderNamesIt()
    {
        var e = Assert.Throws<DiffusionCacheException>(() => ClipTokenizer.Load("/nonexistent/tokenizer"));
        Assert.Contains("/nonexistent/tokenizer", e.Message);
        Assert.Contains("not found", e.Message);
    }

    [Theory]
    [InlineData("merges.txt")]
    [InlineData("vocab.json")]
    public void AMissingRequiredFileNamesIt(string file)
    {
        string dir = CopyTiny(file, null);
        File.Delete(Path.Combine(dir, file));
        var e = Assert.Throws<DiffusionCacheException>(() => ClipTokenizer.Load(dir));
        Assert.Contains(Path.Combine(dir, file), e.Message);
        Assert.Contains("not found", e.Message);
    }

    [Theory]
    [InlineData("vocab.json", "not valid JSON")]
    [InlineData("tokenizer_config.json", "not valid JSON")]
    [InlineData("special_tokens_map.json", "not valid JSON")]
    public void MalformedJsonNamesTheFile(string file, string problem)
    {
        string dir = CopyTiny(file, s => s[..(s.Length / 2)]);
        var e = Assert.Throws<DiffusionCacheException>(() => ClipTokenizer.Load(dir));
        Assert.Contains(Path.Combine(dir, file), e.Message);
        Assert.Contains(problem, e.Message);
    }

    [Theory]
    [InlineData("vocab.json", "\"<|endoftext|>\":999", "\"<|endoftxt|>\":999", "<|endoftext|>")]
    [InlineData("vocab.json", "\"!\":0", "\"!\":\"zero\"", "\"!\"")]
    [InlineData("merges.txt", "\ni n\n", "\ni n x\n", "line 2")]
    [InlineData("merges.txt", "\ni n\n", "\ni nope\n", "nope")]
    [InlineData("tokenizer_config.json", "\"model_max_length\": 77", "\"model_max_length\": \"long\"", "model_max_length")]
    [InlineData("tokenizer_config.json", "\"pad_token\": \"<|endoftext|>\"", "\"pad_token\": 5", "pad_token")]
    public void BadContentNamesTheFileAndTheProblem(string file, string find, string replace, string named)
    {
        string dir = CopyTiny(file, s =>
        {
            Assert.Contains(find, s);
            return s.Replace(find, replace);
        });
        var e = Assert.Throws<DiffusionCacheException>(() => ClipTokenizer.Load(dir));
        Assert.Contains(Path.Combine(dir, file), e.Message);
        Assert.Contains(named, e.Message);
    }

    /// <summary>A temporary copy of the tiny tokenizer folder with <paramref name="file"/> rewritten by
    /// <paramref name="edit"/> (left as it is when null).</summary>
    private static string CopyTiny(string file, Func<string, string>? edit)
    {
        string dir = TinyModels.TempDir();
        foreach (string f in Directory.GetFiles(TinyFolder)) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        string path = Path.Combine(dir, file);
        if (edit is not null) File.WriteAllText(path, edit(File.ReadAllText(path)));
        return dir;
    }
}
