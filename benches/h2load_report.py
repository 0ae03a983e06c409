#!/usr/bin/env python3
"""One h2load run summarised, for benches/h2load.sh and benches/side-by-side.sh.

    h2load_report.py LOG OUT TICKS_BEFORE TICKS_AFTER CALLS [--json]

LOG is h2load's --log-file (one line per request, the third column its time in µs), OUT its
printed summary, TICKS_* the server's CPU time (utime + stime from /proc/PID/stat) around the
run. Prints "req/s p50 p90 p99 µs-per-call" (milliseconds for the percentiles), or with --json
the shape `tactful bench --json` reports.
"""
import json
import os
import re
import sys

log, out, before, after, calls = sys.argv[1:6]
ms = sorted(int(line.split("\t")[2]) / 1000 for line in open(log))
q = lambda p: ms[min(len(ms) - 1, int(p * len(ms)))]
rps = float(re.search(r"([\d.]+) req/s", open(out).read()).group(1))
cpu = (int(after) - int(before)) / os.sysconf("SC_CLK_TCK") / int(calls) * 1e6
if sys.argv[6:] == ["--json"]:
    print(json.dumps({"rps": rps, "latency": {"p50_ms": q(0.5), "p90_ms": q(0.9), "p99_ms": q(0.99)},
                      "server": {"cpu_us_per_unit": cpu}, "errors": {}}))
else:
    print(f"{rps:.0f} {q(.5):.3f} {q(.9):.3f} {q(.99):.3f} {cpu:.1f}")
