#!/usr/bin/env python3
"""The scaling table and plot of docs/performance.md, from `cargo bench --bench scaling`.

Prints a Markdown table of median times (µs) of the full default pipeline (MMR) and of the
same policy with DPP, for every N, d and k, and writes docs/scaling.svg: time against N on
log-log axes, one line per (d, k) for the default policy, so linear growth in N shows as a
slope of 1 (the dotted guide).
"""
import json
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "target", "criterion", "scaling")
OUT = os.path.join(HERE, "..", "docs", "scaling.svg")
NS = (100, 500, 1000, 5000)
DS = (0, 32, 128)
KS = (20, 50, 100)


def median_us(policy, n, d, k):
    path = os.path.join(ROOT, policy, f"n{n}_d{d}_k{k}", "new", "estimates.json")
    with open(path) as f:
        return json.load(f)["median"]["point_estimate"] / 1000.0


def table():
    print("| d | k | policy | " + " | ".join(f"N={n}" for n in NS) + " | per candidate, N=1000→5000 |")
    print("|---:|---:|---|" + "---:|" * (len(NS) + 1))
    for d in DS:
        for k in KS:
            for policy in ("default", "dpp"):
                t = [median_us(policy, n, d, k) for n in NS]
                growth = (t[3] / 5000) / (t[2] / 1000)
                cells = " | ".join(f"{x:,.0f} µs" if x >= 100 else f"{x:.1f} µs" for x in t)
                name = "default (MMR)" if policy == "default" else "DPP"
                print(f"| {d} | {k} | {name} | {cells} | ×{growth:.2f} |")


def plot():
    w, h, left, top, right, bottom = 760, 460, 70, 40, 190, 50
    xs = [math.log10(n) for n in NS]
    series = {(d, k): [median_us("default", n, d, k) for n in NS] for d in DS for k in KS}
    ys = [math.log10(v) for s in series.values() for v in s]
    y0, y1 = math.floor(min(ys)), math.ceil(max(ys))
    x0, x1 = xs[0], xs[-1]
    px = lambda x: left + (x - x0) / (x1 - x0) * (w - left - right)
    py = lambda y: h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom)
    colors = {0: "#888888", 32: "#2a7ab0", 128: "#c0392b"}
    dashes = {20: "", 50: "6,3", 100: "2,3"}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{left}" y="22" font-size="15" font-weight="bold">Default pipeline: median time per request against N (one thread, log-log)</text>']
    for e in range(y0, y1 + 1):
        y = py(e)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{w - right}" y2="{y:.1f}" stroke="#e5e5e5"/>')
        label = f"{10 ** e:g} µs" if e < 3 else f"{10 ** (e - 3):g} ms"
        out.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
    for n, x in zip(NS, xs):
        out.append(f'<line x1="{px(x):.1f}" y1="{top}" x2="{px(x):.1f}" y2="{h - bottom}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{px(x):.1f}" y="{h - bottom + 18}" text-anchor="middle">N = {n}</text>')
    # Slope-1 guide through the d=128, k=100 series' first point: linear growth in N.
    base = math.log10(series[(128, 100)][0])
    out.append(f'<line x1="{px(x0):.1f}" y1="{py(base):.1f}" x2="{px(x1):.1f}" y2="{py(base + x1 - x0):.1f}" stroke="#555" stroke-dasharray="1,4"/>')
    for (d, k), s in series.items():
        pts = " ".join(f"{px(x):.1f},{py(math.log10(v)):.1f}" for x, v in zip(xs, s))
        out.append(f'<polyline points="{pts}" fill="none" stroke="{colors[d]}" stroke-width="2" stroke-dasharray="{dashes[k]}"/>')
    ly = top + 10
    for d in DS:
        for k in KS:
            x = w - right + 15
            out.append(f'<line x1="{x}" y1="{ly}" x2="{x + 30}" y2="{ly}" stroke="{colors[d]}" stroke-width="2" stroke-dasharray="{dashes[k]}"/>')
            out.append(f'<text x="{x + 38}" y="{ly + 4}">d={d}, k={k}</text>')
            ly += 18
    out.append(f'<line x1="{w - right + 15}" y1="{ly}" x2="{w - right + 45}" y2="{ly}" stroke="#555" stroke-dasharray="1,4"/>')
    out.append(f'<text x="{w - right + 53}" y="{ly + 4}">linear in N</text>')
    out.append(f'<text x="{left}" y="{h - 12}" fill="#555">cargo bench --bench scaling &amp;&amp; python3 scripts/scaling-plot.py</text>')
    out.append("</svg>")
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        f.write("\n".join(out) + "\n")
    print(f"\nwrote {os.path.relpath(OUT)}", file=sys.stderr)


if __name__ == "__main__":
    if not os.path.isdir(ROOT):
        sys.exit("no results: run `cargo bench --bench scaling` first")
    table()
    plot()
