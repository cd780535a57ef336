Console.WriteLine("diffcache: CLI under construction");
