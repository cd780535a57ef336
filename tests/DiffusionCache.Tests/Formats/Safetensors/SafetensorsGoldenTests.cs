using DiffusionCache.Formats.Safetensors;
using DiffusionCache.Tests.TestSupport;
using TorchSharp;

namespace DiffusionCache.Tests.Formats.Safetensors;

/// <summary>Files written by the Python reference, from the shared golden data.</summary>
public class SafetensorsGoldenTests
{
    private static readonly string Sd1 = Golden.Path("unet", "models", "sd1-2lvl");

    [Fact]
    public void Fp16VariantHoldsTheFloat32WeightsRoundedToHalf()
    {
        using var half = SafetensorsFile.Open(Path.Combine(Sd1, "diffusion_pytorch_model.fp16.safetensors"));
        using var full = SafetensorsFile.Open(Path.Combine(Sd1, "diffusion_pytorch_model.safetensors"));
        Assert.Equal("pt", half.Metadata["format"]);
        Assert.Equal(full.Entries.Select(e => e.Name).Order(), half.Entries.Select(e => e.Name).Order());
        Assert.Equal(52644, half.Entries.Sum(e => e.ElementCount));   // parameters of sd1-2lvl (README)
        foreach (var entry in half.Entries)
        {
            Assert.Equal(SafetensorsDType.F16, entry.DType);
            Assert.Equal(SafetensorsDType.F32, full.Entry(entry.Name).DType);
            using var h = half.Load(entry.Name);
            using var f = full.Load(entry.Name);
            using var rounded = f.to(torch.ScalarType.Float16);
            Assert.Equal(torch.ScalarType.Float16, h.dtype);
            Assert.Equal(SafetensorsWriterTests.BytesOf(rounded), SafetensorsWriterTests.BytesOf(h));
        }
    }

    [Fact]
    public void CaseFileHoldsInt64ClassLabels()
    {
        string path = Golden.Path("unet", "cases", "sd-class-b1-t999.safetensors");
        using var file = SafetensorsFile.Open(path);
        var entry = file.Entry("class_labels");
        Assert.Equal(SafetensorsDType.I64, entry.DType);
        Assert.Equal(new long[] { 1 }, entry.Shape);
        using var labels = file.Load("class_labels");
        Assert.Equal(torch.ScalarType.Int64, labels.dtype);
        Assert.Equal(3L, labels[0].ToInt64());   // class_labels [3] (README)
        using var sample = file.Load("sample");
        Assert.Equal(torch.ScalarType.Float32, sample.dtype);
        Assert.Equal(4, sample.dim());
    }

    [Theory]
    [InlineData("diffusion_pytorch_model.safetensors")]
    [InlineData("diffusion_pytorch_model.fp16.safetensors")]
    public void RewritingAGoldenFileReproducesItsBytes(string name)
    {
        // Single-dtype files: the reference's dtype-then-name order is plain name order, so ours must match exactly.
        string path = Path.Combine(Sd1, name);
        using var folder = new TempFolder();
        string copy = folder.File(name);
        using (var file = SafetensorsFile.Open(path))
        {
            var tensors = file.Entries.Select(e => new KeyValuePair<string, torch.Tensor>(e.Name, file.Load(e.Name))).ToList();
            SafetensorsWriter.Write(copy, tensors, file.Metadata);
            foreach (var (_, t) in tensors) t.Dispose();
        }
        Assert.Equal(File.ReadAllBytes(path), File.ReadAllBytes(copy));
    }
}
