using DiffusionCache.Parity;
using var folder = GoldenFolder.Open(args[0]);
int pass = 0, fail = 0;
foreach (var r in new UNetParity().Run(folder)) { Console.WriteLine($"{r.CaseId,-32} {r.MaxAbsError,10:E2} {(r.Passed ? "pass" : "FAIL")} {r.Detail}"); if (r.Passed) pass++; else fail++; }
Console.WriteLine($"{pass} passed, {fail} failed");
