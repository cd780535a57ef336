using System.Text;
using Microsoft.ML.Tokenizers;

namespace DiffusionCache.Models.Text;

/// <summary>CLIP's word split, the Python <c>regex</c> (IGNORECASE) findall of
/// <c>&lt;\|startoftext\|&gt;|&lt;\|endoftext\|&gt;|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+</c>.
/// Scanned by hand over code points: .NET's Regex sees UTF-16 code units, so an astral letter (CJK extension B,
/// Deseret, ...) would be two Cs surrogates there instead of one \p{L}.</summary>
internal sealed class ClipPreTokenizer : PreTokenizer
{
    public static readonly ClipPreTokenizer Instance = new();

    private static readonly string[] Specials = ["<|startoftext|>", "<|endoftext|>"];
    private static readonly string[] Contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"];

    private enum Kind { Letter, Number, Space, Other, Nothing }

    public override IEnumerable<(int Offset, int Length)> PreTokenize(string text) => PreTokenize(text.AsSpan());

    public override IEnumerable<(int Offset, int Length)> PreTokenize(ReadOnlySpan<char> text)
    {
        var words = new List<(int Offset, int Length)>();
        int i = 0;
        while (i < text.Length)
        {
            int length = MatchAt(text[i..]);
            if (length > 0) { words.Add((i, length)); i += length; }
            else { KindAt(text[i..], out int n); i += n; }   // whitespace or U+0345: in no word
        }
        return words;
    }

    /// <summary>Length of the regex match starting at the first character of <paramref name="text"/>: the first
    /// alternative that matches wins; 0 where none does.</summary>
    private static int MatchAt(ReadOnlySpan<char> text)
    {
        foreach (string s in Specials) if (StartsWithIgnoreCase(text, s)) return s.Length;
        foreach (string s in Contractions) if (StartsWithIgnoreCase(text, s)) return s.Length;
        Kind kind = KindAt(text, out int length);
        if (kind is Kind.Space or Kind.Nothing) return 0;
        if (kind == Kind.Number) return length;   // [\p{N}]: one code point
        while (length < text.Length && KindAt(text[length..], out int n) == kind) length += n;
        return length;
    }

    private static Kind KindAt(ReadOnlySpan<char> text, out int length)
    {
        // A lone surrogate decodes as U+FFFD (one char): Other, like any symbol.
        Rune.DecodeFromUtf16(text, out Rune r, out length);
        if (r.Value == 0x345) return Kind.Nothing;   // folds to iota, so IGNORECASE keeps it out of [^\s\p{L}\p{N}] too
        return Rune.IsLetter(r) ? Kind.Letter : Rune.IsNumber(r) ? Kind.Number
            : Rune.IsWhiteSpace(r) ? Kind.Space : Kind.Other;
    }

    /// <summary>The text is already lowercase, so IGNORECASE only adds 'ſ' (U+017F), which folds to 's'.</summary>
    private static bool StartsWithIgnoreCase(ReadOnlySpan<char> text, string ascii)
    {
        if (text.Length < ascii.Length) return false;
        for (int i = 0; i < ascii.Length; i++)
            if (text[i] != ascii[i] && !(ascii[i] == 's' && text[i] == 'ſ')) return false;
        return true;
    }
}
