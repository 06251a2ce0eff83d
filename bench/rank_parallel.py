#!/usr/bin/env python3
"""W ranks loading one checkpoint at once: rank-aware loads against full loads (issue 13, item 6).

For each W, starts W `stload load` processes at the same moment and times until the last one
finishes, twice in the same round: once with each process loading only its rank's part
(--rules PRESET --tp-size W --tp-rank r, and with --ep the EP group as large as the TP group),
once with each loading the whole checkpoint, which is what the original loader's ranks do (each
reads and copies everything, then keeps its part). Every process streams (copies each weight
into a reused buffer and releases it: memory stays bounded). Reports per run the bytes each rank
read from the files, the total over the ranks, the wall time until the last rank finished, the
peak RSS of the largest rank, and the ratio full / rank-aware wall time; medians of --repeats
rounds (the two kinds alternate within a round, so noise hits both).

Warm: the checkpoint is in the page cache (read once first), buffered pread. Cold: the page cache
is dropped before every run (root: /proc/sys/vm/drop_caches) and every rank reads with O_DIRECT.
cold-buffered (not by default): dropped, then buffered pread.

  stload make-checkpoint /tmp/ds4g --preset deepseek --total 4GiB
  stload make-checkpoint /tmp/llama4g --preset llama --total 4GiB
  python3 bench/rank_parallel.py --stload build/tools/stload /tmp/ds4g:deepseek-v3 \\
      /tmp/llama4g:llama --widths 2 4 8 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def drop_caches() -> None:
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def warm(path: str) -> None:
    for root, _, files in os.walk(path):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                while f.read(16 << 20):
                    pass


def run_group(commands: list[list[str]]) -> tuple[float, list[dict]]:
    """Starts every command at once; the wall time until the last exits, and their JSON."""
    start = time.monotonic()
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in commands]
    outs = []
    for p, c in zip(procs, commands):
        out, err = p.communicate()
        if p.returncode != 0:
            sys.exit(f"{' '.join(c)} failed ({p.returncode}): {err.strip()}")
        outs.append(json.loads(out))
    return time.monotonic() - start, outs


def file_bytes(report: dict) -> int:
    return sum(report["file_bytes_by_read_path"].values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+", help="PATH:PRESET (preset: llama, deepseek-v3)")
    ap.add_argument("--stload", default="stload", help="the stload binary")
    ap.add_argument("--widths", type=int, nargs="+", default=[2, 4, 8])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="reader threads per rank")
    ap.add_argument("--modes", nargs="+", default=["warm", "cold"], choices=["warm", "cold", "cold-buffered"])
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args()
    if any(m.startswith("cold") for m in args.modes) and os.geteuid() != 0:
        sys.exit("cold runs drop the page cache: run as root, or --modes warm")

    rows = []
    for spec in args.checkpoints:
        path, preset = spec.rsplit(":", 1)
        checkpoint_bytes = sum(os.path.getsize(os.path.join(r, f))
                               for r, _, fs in os.walk(path) for f in fs if f.endswith(".safetensors"))
        variants = [False, True] if preset == "deepseek-v3" else [False]
        for mode in args.modes:
            for w in args.widths:
                for ep in variants:
                    base = [args.stload, "load", path, "--consumer", "stream", "--json",
                            "--no-progress", "--threads", str(args.threads)]
                    if mode == "cold":
                        base.append("--direct-io")
                    ranked = []
                    for r in range(w):
                        c = base + ["--rules", preset, "--tp-size", str(w), "--tp-rank", str(r)]
                        if ep:
                            c += ["--ep-size", str(w), "--ep-rank", str(r)]
                        ranked.append(c)
                    full = [list(base) for _ in range(w)]
                    times = {"rank": [], "full": []}
                    reports = {}
                    for _ in range(args.repeats):
                        for kind, commands in (("rank", ranked), ("full", full)):
                            if mode.startswith("cold"):
                                drop_caches()
                            else:
                                warm(path)
                            seconds, outs = run_group(commands)
                            times[kind].append(seconds)
                            reports[kind] = outs
                    row = {"checkpoint": os.path.basename(path.rstrip("/")), "preset": preset,
                           "checkpoint_bytes": checkpoint_bytes, "mode": mode, "ranks": w,
                           "ep": ep}
                    for kind in ("rank", "full"):
                        per_rank = [file_bytes(o) for o in reports[kind]]
                        row[kind] = {
                            "wall_s_median": statistics.median(times[kind]),
                            "wall_s_all": [round(t, 3) for t in times[kind]],
                            "bytes_read_max_rank": max(per_rank),
                            "bytes_read_total": sum(per_rank),
                            "peak_rss_max_rank": max(o["peak_rss_bytes"] for o in reports[kind]),
                        }
                    row["rank"]["bytes_needed_max_rank"] = max(o["bytes_needed"] for o in reports["rank"])
                    row["full_over_rank_wall"] = (row["full"]["wall_s_median"] /
                                                  row["rank"]["wall_s_median"])
                    rows.append(row)
                    r_, f_ = row["rank"], row["full"]
                    print(f"{row['checkpoint']:>10} {mode:13} W={w}{' EP' if ep else '   '} "
                          f"rank-aware {r_['wall_s_median']:.3f} s, reads {r_['bytes_read_total'] / 2**30:.2f} GiB "
                          f"(max rank {r_['bytes_read_max_rank'] / 2**30:.2f}, needed "
                          f"{r_['bytes_needed_max_rank'] / 2**30:.2f}), RSS {r_['peak_rss_max_rank'] / 2**20:.0f} MiB | "
                          f"full {f_['wall_s_median']:.3f} s, reads {f_['bytes_read_total'] / 2**30:.2f} GiB, "
                          f"RSS {f_['peak_rss_max_rank'] / 2**20:.0f} MiB | full/rank {row['full_over_rank_wall']:.2f}x",
                          flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
