#!/usr/bin/env python3
"""Prints the performance table of docs/performance.md from criterion's results (target/criterion).

Run after `cargo bench -p xent-benches`. For every group (variant/shape) it reads the median
time of `roofline`, `naive` and `xent`, and prints xent's throughput, its share of the
roofline measured in the same run, and its speed-up over the naive unfused baseline.

    python3 benches/report.py [CRITERION_DIR] [--svg CHART.svg] [--cpu "CPU NAME"]

With `--svg` it also draws the chart of the README: per group, the three
rates as bars on one scale (xent, the naive baseline, the roofline), titled with `--cpu`.
"""
import argparse
import json
import pathlib
from xml.sax.saxutils import escape

parser = argparse.ArgumentParser()
parser.add_argument("root", nargs="?", default="target/criterion")
parser.add_argument("--svg", help="also write the chart to this file")
parser.add_argument("--cpu", default="", help="the CPU the results come from, for the chart's title")
args = parser.parse_args()
root = pathlib.Path(args.root)
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


def chart(path, cpu):
    """Horizontal bars, three per group, every rate on one linear scale."""
    names = [("xent", "#1f77b4", "xent"), ("naive", "#ff7f0e", "naive unfused"),
             ("roofline", "#9a9a9a", "roofline (same bytes, no arithmetic)")]
    rows = [g for g in sorted(groups, key=key)
            if all(n in groups[g] for n, _, _ in names) and not g.startswith("linear_ce/")]
    rate = lambda g, n: groups[g][n][1] / groups[g][n][0]
    top = max(rate(g, n) for g in rows for n, _, _ in names)
    label_w, bar_w, bar_h, gap, head = 300, 560, 7, 8, 64
    row_h = 3 * bar_h + gap
    height = head + row_h * len(rows) + 40
    width = label_w + bar_w + 90
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="10" y="18" font-size="14">xent: fused softmax + cross-entropy, Gelem/s '
           f'(median, 2 threads unless the variant says 1)</text>',
           f'<text x="10" y="34">{escape(cpu)}</text>']
    for i, (n, colour, text) in enumerate(names):
        x = 10 + i * 200
        out.append(f'<rect x="{x}" y="44" width="10" height="10" fill="{colour}"/>'
                   f'<text x="{x + 14}" y="53">{escape(text)}</text>')
    step = 5 if top > 20 else 2 if top > 8 else 1
    for t in range(0, int(top) + 1, step):
        x = label_w + bar_w * t / top
        out.append(f'<line x1="{x:.1f}" y1="{head - 4}" x2="{x:.1f}" y2="{height - 30}" '
                   f'stroke="#e0e0e0"/><text x="{x:.1f}" y="{height - 16}" '
                   f'text-anchor="middle">{t}</text>')
    for r, g in enumerate(rows):
        y = head + r * row_h
        variant, shape = g.split("/")
        share = 100 * rate(g, "xent") / rate(g, "roofline")
        out.append(f'<text x="{label_w - 6}" y="{y + 2 * bar_h}" text-anchor="end">'
                   f'{escape(variant)} {escape(shape.replace("x", " × "))} ({share:.0f}%)</text>')
        for i, (n, colour, _) in enumerate(names):
            w = bar_w * rate(g, n) / top
            out.append(f'<rect x="{label_w}" y="{y + i * bar_h}" width="{w:.1f}" '
                       f'height="{bar_h - 1}" fill="{colour}"/>')
        out.append(f'<text x="{label_w + bar_w * rate(g, "xent") / top + 4:.1f}" '
                   f'y="{y + bar_h - 1}" font-size="9">{rate(g, "xent"):.2f}</text>')
    out.append("</svg>")
    pathlib.Path(path).write_text("\n".join(out) + "\n")


if args.svg:
    chart(args.svg, args.cpu)
