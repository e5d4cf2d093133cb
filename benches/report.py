#!/usr/bin/env python3
"""Prints the README's performance table from criterion's results (target/criterion).

Run after `cargo bench -p xent-benches`. For every group (variant/shape) it reads the median
time of `roofline`, `naive` and `xent`, and prints xent's throughput, its share of the
roofline measured in the same run, and its speed-up over the naive unfused baseline.
"""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
groups = {}
for bench in sorted(root.glob("*/*/new/benchmark.json")):
    meta = json.loads(bench.read_text())
    estimates = json.loads((bench.parent / "estimates.json").read_text())
    median_ns = estimates["median"]["point_estimate"]
    elements = meta["throughput"]["Elements"]
    groups.setdefault(meta["group_id"], {})[meta["function_id"]] = (median_ns, elements)

ORDER = ["forward", "fused_in_place", "fused_separate", "softmax", "log_softmax",
         "fused_in_place_1thread", "fused_in_place_bf16", "sharded_in_place", "linear_ce"]
REFERENCE = {"forward": "read-only sum", "fused_in_place": "a[i] *= k",
             "fused_separate": "copy", "softmax": "copy", "log_softmax": "copy",
             "fused_in_place_1thread": "a[i] *= k, 1 thread",
             "fused_in_place_bf16": "a[i] *= k over the same bytes",
             "sharded_in_place": "a[i] *= k",
             "linear_ce": "the 3 GEMMs alone"}


def key(group):
    variant, shape = group.split("/")
    dims = [int(v) for v in shape.split("x")]
    rows, cols = dims[0], dims[-1]
    return (ORDER.index(variant) if variant in ORDER else 99, -rows * cols, rows)


print("| variant | shape | xent Gelem/s | roofline (what) Gelem/s | % of roofline | × naive |")
print("|---|---|---|---|---|---|")
for group in sorted(groups, key=key):
    g = groups[group]
    if "xent" not in g or "roofline" not in g or group.startswith("linear_ce/"):
        continue
    variant, shape = group.split("/")
    rate = lambda name: g[name][1] / g[name][0]  # elements per ns = Gelem/s
    xent, roof = rate("xent"), rate("roofline")
    naive = f"{xent / rate('naive'):.1f}×" if "naive" in g else "–"
    print(f"| {variant} | {shape.replace('x', ' × ')} | {xent:.2f} | {roof:.2f} (`{REFERENCE.get(variant, '')}`) "
          f"| {100 * xent / roof:.0f}% | {naive} |")

for group in sorted(g for g in groups if g.startswith("sharded_in_place/")):
    g = groups[group]
    if "xent" in g and "unsharded" in g:
        print(f"\n{group.split('/')[1].replace('x', ' × ')}: the sharded recipe on one process "
              f"(stats, merge, finish in place) takes {g['xent'][0] / g['unsharded'][0]:.2f}× "
              "the unsharded fused call's time.")

split = groups.get("fused_in_place/1x262144", {}), groups.get("fused_in_place_1thread/1x262144", {})
if "xent" in split[0] and "xent" in split[1]:
    print(f"\n1 × 262144 in place: 2 threads run {split[1]['xent'][0] / split[0]['xent'][0]:.2f}× "
          "faster than 1 thread (the row split into column blocks).")

linear = sorted(g for g in groups if g.startswith("linear_ce/"))
if linear:
    print("\n| LM head (rows × dim × classes) | fused s | unfused s | the 3 GEMMs alone s "
          "| fused / unfused | fused / GEMMs |")
    print("|---|---|---|---|---|---|")
    for group in linear:
        g = groups[group]
        if not all(name in g for name in ("xent", "naive", "roofline")):
            continue
        seconds = {name: g[name][0] / 1e9 for name in ("xent", "naive", "roofline")}
        print(f"| {group.split('/')[1].replace('x', ' × ')} | {seconds['xent']:.2f} | "
              f"{seconds['naive']:.2f} | {seconds['roofline']:.2f} | "
              f"{seconds['xent'] / seconds['naive']:.2f}× | {seconds['xent'] / seconds['roofline']:.2f}× |")
