using DiffusionCache.Analysis;
using DiffusionCache.Models.UNets;
using DiffusionCache.Tests.Models;

namespace DiffusionCache.Tests.Analysis;

public class MacCounterTests
{
    [Fact]
    public void CountsConvolutionsLinearsAndAttentionProducts()
    {
        using var model = new UNet2DConditionModel(TinyModels.SdConfig());
        var report = MacCounter.Count(model, batch: 2, height: 8, width: 8, contextLength: 5);

        // conv_in: 2 x 8 x 8 x 8 outputs, each 4 input channels x 3 x 3.
        Assert.Equal(2L * 8 * 8 * 8 * 4 * 9, report.Of("conv_in"));
        // A 1-layer transformer on 8 channels, 64 tokens, context 5x12, 2 heads of 4:
        long tokens = 2 * 64;
        long expected = tokens * 8 * 8               // proj_in (1x1 conv)
            + tokens * 8 * 8 * 3                     // attn1 q, k, v
            + 2 * 2 * 64 * 64 * 8                    // attn1 QK^T and PV
            + tokens * 8 * 8                         // attn1 out
            + tokens * 8 * 8 + 2 * 5 * 12 * 8 * 2    // attn2 q; k, v from the context
            + 2 * 2 * 64 * 5 * 8                     // attn2 products
            + tokens * 8 * 8                         // attn2 out
            + tokens * 8 * 64 + tokens * 32 * 8      // GEGLU proj (8 -> 64), ff out (32 -> 8)
            + tokens * 8 * 8;                        // proj_out
        Assert.Equal(expected, report.Of("down_blocks.0.attentions.0"));
        // Inclusive counts: a block is the sum of its parts.
        Assert.Equal(report.Of("down_blocks.0.resnets.0") + report.Of("down_blocks.0.attentions.0") + report.Of("down_blocks.0.downsamplers.0"),
            report.Of("down_blocks.0"));
        Assert.True(report.Total > report.Of("down_blocks.0") + report.Of("up_blocks.1"));
    }

    [Fact]
    public void CountsEachResidualPassThroughSeparately()
    {
        using var model = new UNet2DConditionModel(TinyModels.SdConfig());
        var report = MacCounter.Count(model, batch: 2, height: 8, width: 8, contextLength: 5);
        // up_blocks.0.resnets.0 takes cat(h, skip) = 32 channels at 4x4 to 16: its 1x1 conv_shortcut is the pass-through.
        Assert.Equal(2L * 16 * 4 * 4 * 32, report.PassThroughOf("up_blocks.0.resnets.0"));
        Assert.True(report.Of("up_blocks.0.resnets.0") > report.PassThroughOf("up_blocks.0.resnets.0"));
        Assert.Equal(0, report.PassThroughOf("down_blocks.0.resnets.0"));        // identity shortcut
        Assert.Equal(0, report.PassThroughOf("down_blocks.0.attentions.0"));     // a transformer adds its input
        Assert.False(report.PassThroughBySite.ContainsKey("conv_in"));           // not residual
        // Measuring the pass-through does not change the totals.
        Assert.Equal(report.Of("down_blocks.0.resnets.0") + report.Of("down_blocks.0.attentions.0") + report.Of("down_blocks.0.downsamplers.0"),
            report.Of("down_blocks.0"));
    }
}
