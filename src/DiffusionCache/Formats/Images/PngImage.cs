using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;
using StbImageWriteSharp;
using TorchSharp;
using static TorchSharp.torch;

namespace DiffusionCache.Formats.Images;

/// <summary>
/// Writes an image tensor as a PNG with text metadata (the <c>parameters</c> chunk other Stable Diffusion tools
/// read). StbImageWriteSharp encodes the pixels; it cannot write text chunks, so they are spliced in after the
/// header chunk by hand: a chunk is length, type, data and a CRC-32 (PNG spec §5.3, §11.3.4).
/// </summary>
public static class PngImage
{
    /// <summary>Writes <paramref name="image"/> as an 8-bit PNG file, atomically (see
    /// <see cref="AtomicFile"/>).</summary>
    /// <param name="path">The PNG file to create or replace; its folder is created if missing.</param>
    /// <param name="image">[C, H, W] (C = 1 or 3) in [-1, 1].</param>
    /// <param name="text">keyword → text; Latin-1 text goes in tEXt, anything else in an uncompressed UTF-8 iTXt.</param>
    public static void Write(string path, Tensor image, IReadOnlyDictionary<string, string>? text = null)
    {
        var png = Encode(image, text);
        AtomicFile.Write(path, s => s.Write(png));
    }

    /// <summary>Encodes <paramref name="image"/> as the bytes of an 8-bit grayscale or RGB PNG: values are clamped to
    /// [-1, 1] and mapped to 0..255. Throws <see cref="DiffusionCacheException"/> for another shape and
    /// <see cref="ArgumentException"/> for a keyword that is not 1-79 printable ASCII characters.</summary>
    /// <param name="image">[C, H, W] (C = 1 or 3) in [-1, 1], any type or device; not modified.</param>
    /// <param name="text">keyword → text; Latin-1 text goes in tEXt, anything else in an uncompressed UTF-8
    /// iTXt.</param>
    public static byte[] Encode(Tensor image, IReadOnlyDictionary<string, string>? text = null)
    {
        if (image.dim() != 3 || image.shape[0] is not (1 or 3))
            throw new DiffusionCacheException($"an image must be [1 or 3, H, W], got [{string.Join(",", image.shape)}]");
        int channels = (int)image.shape[0], h = (int)image.shape[1], w = (int)image.shape[2];
        byte[] pixels;
        using (var scope = NewDisposeScope())
        {
            var hwc = ((image.detach().to(ScalarType.Float32, CPU).clamp(-1, 1) + 1) * 127.5).round().to(ScalarType.Byte).permute(1, 2, 0).contiguous();
            pixels = hwc.data<byte>().ToArray();
        }
        using var encoded = new MemoryStream();
        new ImageWriter().WritePng(pixels, w, h, channels == 1 ? ColorComponents.Grey : ColorComponents.RedGreenBlue, encoded);
        var bytes = encoded.ToArray();
        if (text is null || text.Count == 0) return bytes;

        // Signature (8 bytes) + IHDR (4 length + 4 type + 13 data + 4 CRC) = 33 bytes; text chunks follow IHDR.
        const int afterHeader = 33;
        using var output = new MemoryStream(bytes.Length + 256);
        output.Write(bytes, 0, afterHeader);
        foreach (var (keyword, value) in text) WriteTextChunk(output, keyword, value);
        output.Write(bytes, afterHeader, bytes.Length - afterHeader);
        return output.ToArray();
    }

    /// <summary>The text chunks of a PNG file (tEXt and uncompressed iTXt), keyword → text.</summary>
    public static IReadOnlyDictionary<string, string> ReadText(string path)
    {
        var bytes = File.ReadAllBytes(path);
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        for (int at = 8; at + 12 <= bytes.Length;)
        {
            int length = BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(at));
            string type = Encoding.ASCII.GetString(bytes, at + 4, 4);
            var data = bytes.AsSpan(at + 8, length);
            int nul = data.IndexOf((byte)0);
            if (type == "tEXt" && nul > 0)
                result[Encoding.Latin1.GetString(data[..nul])] = Encoding.Latin1.GetString(data[(nul + 1)..]);
            else if (type == "iTXt" && nul > 0 && data[nul + 1] == 0)
            {
                // keyword NUL, compression flag, method, language tag NUL, translated keyword NUL, text
                var rest = data[(nul + 3)..];
                int language = rest.IndexOf((byte)0);
                int translated = rest[(language + 1)..].IndexOf((byte)0);
                result[Encoding.Latin1.GetString(data[..nul])] = Encoding.UTF8.GetString(rest[(language + 1 + translated + 1)..]);
            }
            at += 12 + length;
        }
        return result;
    }

    private static void WriteTextChunk(Stream output, string keyword, string value)
    {
        if (keyword.Length is < 1 or > 79 || keyword.Any(c => c < 32 || c > 126))
            throw new ArgumentException($"PNG text keyword '{keyword}' must be 1-79 printable ASCII characters", nameof(keyword));
        bool latin1 = value.All(c => c <= 0xFF);
        var data = new MemoryStream();
        data.Write(Encoding.ASCII.GetBytes(keyword));
        data.WriteByte(0);
        if (latin1) data.Write(Encoding.Latin1.GetBytes(value));
        else
        {
            data.Write([0, 0, 0, 0]);   // not compressed, method 0, empty language tag, empty translated keyword
            data.Write(Encoding.UTF8.GetBytes(value));
        }
        WriteChunk(output, latin1 ? "tEXt" : "iTXt", data.ToArray());
    }

    private static void WriteChunk(Stream output, string type, byte[] data)
    {
        Span<byte> word = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(word, data.Length);
        output.Write(word);
        var typeAndData = new byte[4 + data.Length];
        Encoding.ASCII.GetBytes(type, typeAndData);
        data.CopyTo(typeAndData, 4);
        output.Write(typeAndData);
        BinaryPrimitives.WriteUInt32BigEndian(word, Crc32.HashToUInt32(typeAndData));
        output.Write(word);
    }
}
