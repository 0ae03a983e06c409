#!/usr/bin/env python3
"""Prints docs/performance.md's diversity benchmark table from criterion's results.

Run `cargo bench --bench diversity` first. For each case it reads the median time of MMR,
DPP and the reference (k passes of one N×d multiply-add) and prints each method's ratio to
the reference: 1.0 means the method costs exactly its O(k·N·d) bound.
"""
import json
import os
import sys

ROOT = os.path.join(os.path.dirname(__file__), "..", "target", "criterion", "diversity")


def median_ns(method, case):
    path = os.path.join(ROOT, method, case, "new", "estimates.json")
    with open(path) as f:
        return json.load(f)["median"]["point_estimate"]


def main():
    if not os.path.isdir(ROOT):
        sys.exit("no results: run `cargo bench --bench diversity` first")
    print("| N | d | k | reference | ns per multiply-add | MMR | ratio | DPP | ratio |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in (100, 1000):
        for d in (32, 128):
            for k in (20, 100):
                case = f"n{n}_d{d}_k{k}"
                ref = median_ns("reference", case)
                mmr = median_ns("mmr", case)
                dpp = median_ns("dpp", case)
                per_fma = ref / (n * d * k)
                us = lambda ns: f"{ns / 1000:.1f} µs"
                print(
                    f"| {n} | {d} | {k} | {us(ref)} | {per_fma:.3f} | {us(mmr)} | "
                    f"{mmr / ref:.2f} | {us(dpp)} | {dpp / ref:.2f} |"
                )


if __name__ == "__main__":
    main()
