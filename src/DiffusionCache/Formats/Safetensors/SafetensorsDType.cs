using TorchSharp;

namespace DiffusionCache.Formats.Safetensors;

/// <summary>The element types of the safetensors format that we read, with their size and torch type.</summary>
public enum SafetensorsDType
{
    /// <summary>64-bit IEEE float (torch float64).</summary>
    F64,
    /// <summary>32-bit IEEE float (torch float32).</summary>
    F32,
    /// <summary>16-bit IEEE half (torch float16).</summary>
    F16,
    /// <summary>16-bit brain float (torch bfloat16).</summary>
    BF16,
    /// <summary>64-bit signed integer (torch int64).</summary>
    I64,
    /// <summary>32-bit signed integer (torch int32).</summary>
    I32,
    /// <summary>16-bit signed integer (torch int16).</summary>
    I16,
    /// <summary>8-bit signed integer (torch int8).</summary>
    I8,
    /// <summary>8-bit unsigned integer (torch uint8).</summary>
    U8,
    /// <summary>Boolean, one byte per element that must be 0 or 1 (torch bool).</summary>
    BOOL,
}

/// <summary>Header codes, element sizes and torch types of <see cref="SafetensorsDType"/>.</summary>
public static class SafetensorsDTypes
{
    /// <summary>Reads the <c>dtype</c> code of a header entry, case-sensitive as the format spells it
    /// (<c>"F16"</c>, <c>"BF16"</c>, ...); false for a code this library does not read (e.g. <c>F8_E4M3</c>,
    /// <c>U16</c>).</summary>
    public static bool TryParse(string code, out SafetensorsDType dtype)
    {
        // Names only: Enum.TryParse alone also takes numbers ("1") and comma lists ("F32, F16"), which no writer emits.
        dtype = default;
        return Array.IndexOf(Enum.GetNames<SafetensorsDType>(), code) >= 0 && Enum.TryParse(code, ignoreCase: false, out dtype);
    }

    /// <summary>Bytes per element: 8, 4, 2 or 1.</summary>
    public static int ByteSize(this SafetensorsDType dtype) => dtype switch
    {
        SafetensorsDType.F64 or SafetensorsDType.I64 => 8,
        SafetensorsDType.F32 or SafetensorsDType.I32 => 4,
        SafetensorsDType.F16 or SafetensorsDType.BF16 or SafetensorsDType.I16 => 2,
        _ => 1,
    };

    /// <summary>The torch type a tensor of this type is read into.</summary>
    public static torch.ScalarType ToScalarType(this SafetensorsDType dtype) => dtype switch
    {
        SafetensorsDType.F64 => torch.ScalarType.Float64,
        SafetensorsDType.F32 => torch.ScalarType.Float32,
        SafetensorsDType.F16 => torch.ScalarType.Float16,
        SafetensorsDType.BF16 => torch.ScalarType.BFloat16,
        SafetensorsDType.I64 => torch.ScalarType.Int64,
        SafetensorsDType.I32 => torch.ScalarType.Int32,
        SafetensorsDType.I16 => torch.ScalarType.Int16,
        SafetensorsDType.I8 => torch.ScalarType.Int8,
        SafetensorsDType.U8 => torch.ScalarType.Byte,
        _ => torch.ScalarType.Bool,
    };

    /// <summary>The safetensors type that stores a torch type; throws <see cref="DiffusionCacheException"/> for a torch
    /// type the format (as we write it) cannot hold, such as complex types.</summary>
    public static SafetensorsDType FromScalarType(torch.ScalarType type) => type switch
    {
        torch.ScalarType.Float64 => SafetensorsDType.F64,
        torch.ScalarType.Float32 => SafetensorsDType.F32,
        torch.ScalarType.Float16 => SafetensorsDType.F16,
        torch.ScalarType.BFloat16 => SafetensorsDType.BF16,
        torch.ScalarType.Int64 => SafetensorsDType.I64,
        torch.ScalarType.Int32 => SafetensorsDType.I32,
        torch.ScalarType.Int16 => SafetensorsDType.I16,
        torch.ScalarType.Int8 => SafetensorsDType.I8,
        torch.ScalarType.Byte => SafetensorsDType.U8,
        torch.ScalarType.Bool => SafetensorsDType.BOOL,
        _ => throw new DiffusionCacheException($"safetensors cannot store torch type {type}"),
    };
}
