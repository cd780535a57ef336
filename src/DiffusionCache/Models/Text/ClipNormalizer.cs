using System.Globalization;
using System.Text;
using Microsoft.ML.Tokenizers;

namespace DiffusionCache.Models.Text;

/// <summary>CLIPTokenizer's text cleanup for one piece of text (between special tokens):
/// <c>whitespace_clean(text).lower()</c>, i.e. Python <c>regex</c> <c>\s+</c> -> one space, <c>str.strip()</c>,
/// <c>str.lower()</c>. ftfy's repairs are not applied (see <see cref="ClipTokenizer"/>).</summary>
internal sealed class ClipNormalizer : Normalizer
{
    public static readonly ClipNormalizer Instance = new();

    private static readonly char[] PythonStripExtra = ['\x1c', '\x1d', '\x1e', '\x1f', ' '];

    public override string Normalize(string original) => PythonLower(CollapseWhitespace(original));

    public override string Normalize(ReadOnlySpan<char> original) => Normalize(original.ToString());

    /// <summary>Python <c>regex</c> <c>\s</c> is exactly <see cref="char.IsWhiteSpace(char)"/> (no astral code point is
    /// White_Space); <c>str.strip()</c> also removes U+001C..U+001F, which <c>\s</c> leaves in.</summary>
    internal static string CollapseWhitespace(string text)
    {
        var sb = new StringBuilder(text.Length);
        bool space = false;
        foreach (char c in text)
        {
            if (char.IsWhiteSpace(c)) { space = true; continue; }
            if (space && sb.Length > 0) sb.Append(' ');
            space = false;
            sb.Append(c);
        }
        return sb.ToString().Trim(PythonStripExtra);
    }

    /// <summary>Python <c>str.lower()</c>: .NET's invariant simple mapping, plus the two full-mapping rules it lacks
    /// (U+0130 -> "i" + U+0307, and a capital sigma at the end of a word -> final sigma).</summary>
    internal static string PythonLower(string text)
    {
        if (text.Contains('\u0130') || text.Contains('Σ'))
        {
            var sb = new StringBuilder(text.Length + 4);
            for (int i = 0; i < text.Length; i++)
            {
                if (text[i] == '\u0130') sb.Append("i\u0307");
                else if (text[i] == 'Σ') sb.Append(IsFinalSigma(text, i) ? 'ς' : 'σ');
                else sb.Append(text[i]);
            }
            text = sb.ToString();
        }
        return text.ToLowerInvariant();
    }

    /// <summary>Unicode's Final_Sigma context, as CPython tests it: a cased letter before and none after, skipping
    /// case-ignorable characters both ways.</summary>
    private static bool IsFinalSigma(string text, int i) =>
        NextNotIgnorable(text.AsSpan(0, i), backwards: true) is Rune before && IsCased(before)
        && !(NextNotIgnorable(text.AsSpan(i + 1), backwards: false) is Rune after && IsCased(after));

    private static Rune? NextNotIgnorable(ReadOnlySpan<char> span, bool backwards)
    {
        while (!span.IsEmpty)
        {
            // A lone surrogate decodes as U+FFFD, one char long: neither cased nor ignorable, as in Python.
            int n;
            Rune r;
            if (backwards) { Rune.DecodeLastFromUtf16(span, out r, out n); span = span[..^n]; }
            else { Rune.DecodeFromUtf16(span, out r, out n); span = span[n..]; }
            if (!IsCaseIgnorable(r)) return r;
        }
        return null;
    }

    /// <summary>Cased = Lu, Ll, Lt, Other_Lowercase, Other_Uppercase; the last two add only these code points
    /// outside the letter categories that are not case-ignorable.</summary>
    private static bool IsCased(Rune r) => Rune.GetUnicodeCategory(r) is UnicodeCategory.UppercaseLetter
            or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
        || r.Value is 0xAA or 0xBA or (>= 0x2160 and <= 0x217F) or (>= 0x24B6 and <= 0x24E9)
            or (>= 0x1F130 and <= 0x1F149) or (>= 0x1F150 and <= 0x1F169) or (>= 0x1F170 and <= 0x1F189);

    /// <summary>Case_Ignorable = Mn, Me, Cf, Lm, Sk, and Word_Break MidLetter, MidNumLet, Single_Quote (listed).</summary>
    private static bool IsCaseIgnorable(Rune r) => r.Value is '\'' or '.' or ':' or '·' or 0x387 or 0x55F or 0x5F4
            or 0x2018 or 0x2019 or 0x2024 or 0x2027 or 0xFE13 or 0xFE52 or 0xFE55 or 0xFF07 or 0xFF0E or 0xFF1A
        || Rune.GetUnicodeCategory(r) is UnicodeCategory.NonSpacingMark or UnicodeCategory.EnclosingMark
            or UnicodeCategory.Format or UnicodeCategory.ModifierLetter or UnicodeCategory.ModifierSymbol;
}
