#!/usr/bin/env python3
"""Draws the chart of a `stload bench --json` report: one panel per cache state (warm, cold) and
consumer, a group of bars per read mode (one bar per thread count, median GB/s), and over each
group a line at the limit that load is compared with, measured in the same run.

Usage: plot_bench.py REPORT.json CHART.{png,svg}

`stload bench --chart FILE` runs this script (installed as stload-plot). Needs Debian's
python3-matplotlib (apt-get install python3-matplotlib).
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")  # no display needed
import matplotlib.pyplot as plt  # noqa: E402


def panels(report):
    """(cache, consumer) pairs in the order they were measured."""
    seen = []
    for run in report["runs"]:
        key = (run["cache"], run["consumer"])
        if key not in seen:
            seen.append(key)
    return seen


def draw_panel(ax, runs, title):
    modes = list(dict.fromkeys(r["mode"] for r in runs))
    threads = sorted({r["threads"] for r in runs})
    width = 0.8 / len(threads)
    for ti, t in enumerate(threads):
        xs, ys = [], []
        for mi, mode in enumerate(modes):
            for r in runs:
                if r["mode"] == mode and r["threads"] == t:
                    xs.append(mi - 0.4 + width * (ti + 0.5))
                    ys.append(r["median_gb_per_s"])
        ax.bar(xs, ys, width * 0.9, label=f"{t} thread{'s' if t > 1 else ''}")
    labelled = set()
    for mi, mode in enumerate(modes):
        limit = next((r for r in runs if r["mode"] == mode), None)
        if limit and limit["limit_gb_per_s"] > 0:
            name = limit["limit"]
            ax.hlines(limit["limit_gb_per_s"], mi - 0.45, mi + 0.45, colors="black",
                      linestyles="dashed",
                      label=None if name in labelled else f"limit: {name}")
            labelled.add(name)
    ax.set_xticks(range(len(modes)))
    ax.set_xticklabels(modes)
    ax.set_ylabel("GB/s (median)")
    ax.set_title(title)
    top = max([r["median_gb_per_s"] for r in runs] + [r["limit_gb_per_s"] for r in runs])
    ax.set_ylim(0, top * 1.45 if top > 0 else 1)  # room for the legend above the bars
    ax.legend(fontsize="x-small", loc="upper left", ncol=2)


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        report = json.load(f)
    keys = panels(report)
    if not keys:
        print("plot_bench.py: the report has no runs", file=sys.stderr)
        return 1
    columns = min(3, len(keys))
    rows = (len(keys) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(5.5 * columns, 4 * rows), squeeze=False)
    for i, (cache, consumer) in enumerate(keys):
        runs = [r for r in report["runs"] if r["cache"] == cache and r["consumer"] == consumer]
        draw_panel(axes[i // columns][i % columns], runs, f"{cache} cache, {consumer}")
    for j in range(len(keys), rows * columns):
        axes[j // columns][j % columns].axis("off")
    gib = report["tensor_bytes"] / 2**30
    fig.suptitle(f"stload bench: {report['path']} ({report['files']} files, {gib:.2f} GiB), "
                 f"{report['cpus']} CPUs, median of {report['repeat']}")
    fig.tight_layout()
    fig.savefig(argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
