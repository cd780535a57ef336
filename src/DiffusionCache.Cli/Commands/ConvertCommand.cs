using System.CommandLine;
using DiffusionCache.Formats.Diffusers;

namespace DiffusionCache.Cli.Commands;

/// <summary><c>diffcache convert-fp16 COMPONENT_DIR</c>: writes the float16 variant of a component's weights.</summary>
internal static class ConvertCommand
{
    public static Command Create()
    {
        var dir = new Argument<string>("component-dir") { Description = "diffusers component folder (config.json + diffusion_pytorch_model.safetensors)" };
        var keep = new Option<bool>("--keep-fp32") { Description = "keep the float32 file next to the variant" };
        var command = new Command("convert-fp16", "write the fp16 variant of a component's weights (halves a shipped model)") { dir, keep };
        command.SetAction(parse => CommandRunner.Run(() =>
        {
            var (before, after) = VariantConverter.ToFp16(parse.GetValue(dir)!, parse.GetValue(keep));
            Console.WriteLine($"wrote the fp16 variant: {before / 1048576.0:0.0} MB -> {after / 1048576.0:0.0} MB");
            return 0;
        }));
        return command;
    }
}
