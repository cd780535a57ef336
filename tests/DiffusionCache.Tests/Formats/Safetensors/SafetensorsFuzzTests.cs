using System.Buffers.Binary;
using System.Text;
using DiffusionCache.Formats.Safetensors;
using DiffusionCache.Tests.TestSupport;
using TorchSharp;
using Xunit.Abstractions;

namespace DiffusionCache.Tests.Formats.Safetensors;

/// <summary>Random corruptions of a valid file, with a fixed seed: opening it and loading every tensor must either
/// work or throw <see cref="SafetensorsException"/> for that file, nothing else.</summary>
public class SafetensorsFuzzTests(ITestOutputHelper output)
{
    private const int Iterations = 3000;

    private static readonly string[] Tokens =
    [
        "{", "}", "[", "]", "\"", ",", ":", " ", "\\", "-1", "0", "1", "7", "1.5", "1e309", "-0", "null", "true",
        "\\u0000", "\\ud800", "\\\"", "99999999999999999999", "9223372036854775807", "\"F32\"", "\"BOOL\"",
        "\"I64\"", "\"__metadata__\"", "\"shape\"", "\"data_offsets\"", "[0,0]", "{}", "[[[[[[[[[[[[[[[[[[",
    ];

    [Fact]
    public void RandomCorruptionsGiveSafetensorsExceptionOrValidTensors()
    {
        using var folder = new TempFolder();
        byte[] valid = ValidFile(folder.File("valid.safetensors"));
        int headerLength = (int)BinaryPrimitives.ReadUInt64LittleEndian(valid);
        string path = folder.File("fuzz.safetensors");
        var random = new Random(20240611);
        int loaded = 0, refused = 0;

        for (int i = 0; i < Iterations; i++)
        {
            var (content, what) = Mutate(valid, headerLength, random);
            File.WriteAllBytes(path, content);
            try
            {
                SafetensorsHostileInputTests.OpenAndLoadAll(path);
                loaded++;
            }
            catch (SafetensorsException e)
            {
                Assert.Equal(path, e.FilePath);
                refused++;
            }
            catch (Exception e)
            {
                Assert.Fail($"iteration {i} ({what}): {e.GetType().Name} instead of SafetensorsException: {e.Message}");
            }
        }

        output.WriteLine($"{loaded} loaded, {refused} refused");
        // Both outcomes occur, so the corruptions reach past the first checks and some keep the file valid.
        Assert.True(loaded > 50, $"only {loaded} corrupted files loaded");
        Assert.True(refused > Iterations / 2, $"only {refused} corrupted files refused");
    }

    /// <summary>A small file with every dtype, a scalar, an empty tensor and metadata.</summary>
    private static byte[] ValidFile(string path)
    {
        var random = new Random(3);
        var tensors = new List<KeyValuePair<string, torch.Tensor>>();
        foreach (var dtype in Enum.GetValues<SafetensorsDType>())
            tensors.Add(new($"w.{dtype}", SafetensorsWriterTests.RandomTensor(dtype, [2, 3], random)));
        tensors.Add(new("scalar", SafetensorsWriterTests.RandomTensor(SafetensorsDType.F32, [], random)));
        tensors.Add(new("empty", SafetensorsWriterTests.RandomTensor(SafetensorsDType.I16, [0, 4], random)));
        SafetensorsWriter.Write(path, tensors, new Dictionary<string, string> { ["format"] = "pt" });
        foreach (var (_, t) in tensors) t.Dispose();
        return File.ReadAllBytes(path);
    }

    private static (byte[] Content, string What) Mutate(byte[] valid, int headerLength, Random random)
    {
        var bytes = (byte[])valid.Clone();
        switch (random.Next(8))
        {
            case 0:
            {
                int flips = random.Next(1, 4);
                for (int k = 0; k < flips; k++) bytes[random.Next(bytes.Length)] ^= (byte)(1 << random.Next(8));
                return (bytes, $"{flips} bit flips");
            }
            case 1:
            {
                int at = 8 + random.Next(headerLength);
                bytes[at] = (byte)random.Next(256);
                return (bytes, $"header byte {at} set");
            }
            case 2:
            {
                int length = random.Next(bytes.Length);
                return (bytes[..length], $"truncated to {length}");
            }
            case 3:
            {
                ulong[] choices =
                [
                    0, 1, (ulong)headerLength - 1, (ulong)headerLength + 1, (ulong)random.Next(bytes.Length + 16),
                    (ulong)random.NextInt64(), ulong.MaxValue, (ulong)SafetensorsFile.MaxHeaderBytes + 1,
                ];
                ulong value = choices[random.Next(choices.Length)];
                BinaryPrimitives.WriteUInt64LittleEndian(bytes, value);
                return (bytes, $"header length {value}");
            }
            case 4:
                return Edit(valid, headerLength, random, (json, at) => json.Insert(at, Tokens[random.Next(Tokens.Length)]), "token inserted");
            case 5:
                return Edit(valid, headerLength, random, (json, at) => ReplaceNumber(json, at, random), "number replaced");
            case 6:
                return Edit(valid, headerLength, random, (json, at) => json.Remove(at, Math.Min(random.Next(1, 12), json.Length - at)), "span deleted");
            default:
                return Edit(valid, headerLength, random, (json, at) =>
                {
                    int length = Math.Min(random.Next(1, 40), json.Length - at);
                    return json.Insert(random.Next(json.Length + 1), json.Substring(at, length));
                }, "span duplicated");
        }
    }

    /// <summary>Changes the header text and rewrites the length prefix to match, so the corruption reaches the
    /// JSON and semantic checks instead of failing at the length.</summary>
    private static (byte[], string) Edit(byte[] valid, int headerLength, Random random, Func<string, int, string> change, string what)
    {
        string json = Encoding.UTF8.GetString(valid, 8, headerLength).TrimEnd(' ');
        string changed = change(json, random.Next(json.Length));
        byte[] header = Encoding.UTF8.GetBytes(changed);
        return (SafetensorsHostileInputTests.Build(header, valid[(8 + headerLength)..]), $"{what}: {changed}");
    }

    private static string ReplaceNumber(string json, int at, Random random)
    {
        int start = json.IndexOfAny("0123456789".ToCharArray(), at);
        if (start < 0) return json;
        int end = start;
        while (end < json.Length && char.IsAsciiDigit(json[end])) end++;
        long old = long.Parse(json.AsSpan(start, end - start));
        string[] replacements =
        [
            (old + 1).ToString(), (old - 1).ToString(), (old + random.Next(-16, 17)).ToString(), "0",
            long.MaxValue.ToString(), random.NextInt64().ToString(), old + ".0", "-" + old,
        ];
        return json[..start] + replacements[random.Next(replacements.Length)] + json[end..];
    }
}
