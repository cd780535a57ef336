using DiffusionCache.Sharding;

namespace DiffusionCache.Tests.Sharding;

public sealed class ShardTests
{
    [Theory]
    [InlineData("0/1", 0, 1)]
    [InlineData("3/4", 3, 4)]
    [InlineData("12/100", 12, 100)]
    public void Parses_index_and_count(string text, int index, int count) => Assert.Equal(new Shard(index, count), Shard.Parse(text));

    [Theory]
    [InlineData("4/4")]
    [InlineData("-1/4")]
    [InlineData("0/0")]
    [InlineData("1")]
    [InlineData("a/b")]
    [InlineData("1/2/3")]
    [InlineData(" 1/2")]
    [InlineData("")]
    public void Malformed_or_out_of_range_is_one_clear_error(string text)
    {
        var e = Assert.Throws<DiffusionCacheException>(() => Shard.Parse(text));
        Assert.Contains("shard", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(4, 4)]
    [InlineData(10, 4)]
    [InlineData(7, 3)]
    [InlineData(100, 7)]
    public void Ranges_cover_every_item_once_in_order(int items, int shards)
    {
        var covered = Enumerable.Range(0, shards).SelectMany(i =>
        {
            var (start, end) = new Shard(i, shards).Range(items);
            Assert.InRange(end - start, items / shards, items / shards + 1);
            return Enumerable.Range(start, end - start);
        });
        Assert.Equal(Enumerable.Range(0, items), covered);
    }

    [Fact]
    public void Status_lists_missing_and_refuses_duplicates_and_other_runs()
    {
        var run = new Dictionary<string, string> { ["steps"] = "10", ["model"] = "m" };
        ShardHeader H(int i, int n = 3, string steps = "10", string path = "p") =>
            new("profile", new Shard(i, n), new Dictionary<string, string>(run) { ["steps"] = steps }, $"{path}{i}");

        var status = ShardFiles.Status([H(2), H(0)]);
        Assert.Equal([0, 2], status.Done.Select(h => h.Shard.Index));
        Assert.Equal([1], status.Missing);
        Assert.Contains("1/3", Assert.Throws<DiffusionCacheException>(() => ShardFiles.RequireComplete([H(2), H(0)])).Message, StringComparison.Ordinal);
        Assert.Contains("given twice", Assert.Throws<DiffusionCacheException>(() => ShardFiles.Status([H(0), H(1), H(1, path: "q")])).Message, StringComparison.Ordinal);
        Assert.Contains("steps: '10' vs '20'", Assert.Throws<DiffusionCacheException>(() => ShardFiles.Status([H(0), H(1, steps: "20")])).Message, StringComparison.Ordinal);
        Assert.Contains("shard count", Assert.Throws<DiffusionCacheException>(() => ShardFiles.Status([H(0), H(1, n: 4)])).Message, StringComparison.Ordinal);
    }
}
