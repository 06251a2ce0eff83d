#!/usr/bin/env python3
"""Runs `stload load` over read paths x threads x consumers on a checkpoint, warm and/or cold,
next to the machine's single-copy limit measured in the same run (bench/read_limit.cc), and
prints a Markdown table of medians (GB/s, ratio to the limit, peak RSS).

Example:
  bench/measure_loader.py build /tmp/ckpt-4g --threads 1,2,4,8 --repeat 3 --both

Cold runs drop the page cache before every repetition (needs root:
/proc/sys/vm/drop_caches).
"""
import argparse
import glob
import json
import os
import statistics
import subprocess
import sys

PATH_FLAGS = {
    "pread": ["--no-mmap"],
    "mmap": ["--mmap"],
    "direct": ["--direct-io"],
    "uring": ["--no-mmap", "--io-uring"],
    "direct-uring": ["--direct-io", "--io-uring"],
}


def drop_caches():
    subprocess.run(["sync"], check=True)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def warm(files):
    for name in files:
        with open(name, "rb") as f:
            while f.read(1 << 24):
                pass


def shard_files(ckpt):
    if os.path.isfile(ckpt):
        return [ckpt]
    return sorted(glob.glob(os.path.join(ckpt, "*.safetensors")))


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build", help="build directory (holds tools/stload and bench/stload_read_limit)")
    ap.add_argument("checkpoint")
    ap.add_argument("--threads", default="1,2,4,8")
    ap.add_argument("--paths", default="pread,mmap,direct,uring")
    ap.add_argument("--consumers", default="prealloc,stream,keep")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--memory-limit", default=None, help="passed to stream (and keep)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--cold", action="store_true")
    mode.add_argument("--both", action="store_true")
    ap.add_argument("--json", help="write every repetition here")
    args = ap.parse_args()

    stload = os.path.join(args.build, "tools", "stload")
    limit_tool = os.path.join(args.build, "bench", "stload_read_limit")
    files = shard_files(args.checkpoint)
    states = ["warm", "cold"] if args.both else (["cold"] if args.cold else ["warm"])
    records = []
    for state in states:
        def prepare():
            if state == "cold":
                drop_caches()
            else:
                warm(files)
        limits = []
        for _ in range(args.repeat):
            prepare()
            limits.append(run_json([limit_tool] + files)["gb_per_s"])
        limit = statistics.median(limits)
        print(f"\n### {state} page cache: {args.checkpoint}\n")
        print(f"single-copy limit (read() of each file into a pre-touched buffer): "
              f"median {limit:.2f} GB/s of {', '.join(f'{x:.2f}' for x in limits)}\n")
        print("| consumer | path | threads | GB/s (median) | % of limit | peak RSS MiB | runs GB/s |")
        print("|---|---|---|---|---|---|---|")
        for consumer in args.consumers.split(","):
            for path in args.paths.split(","):
                for threads in args.threads.split(","):
                    runs = []
                    for _ in range(args.repeat):
                        prepare()
                        cmd = [stload, "load", args.checkpoint, "--json", "--no-progress",
                               "--consumer", consumer, "--threads", threads] + PATH_FLAGS[path]
                        if args.memory_limit and consumer != "prealloc":
                            cmd += ["--memory-limit", args.memory_limit]
                        r = run_json(cmd)
                        r.update(state=state, mode=path, limit_gb_per_s=limit)
                        records.append(r)
                        runs.append(r)
                    gbps = statistics.median(r["gb_per_s"] for r in runs)
                    each = ", ".join(f"{r['gb_per_s']:.2f}" for r in runs)
                    rss = max(r["peak_rss_bytes"] for r in runs) / 2**20
                    print(f"| {consumer} | {path} | {threads} | {gbps:.2f} | {100 * gbps / limit:.0f}% "
                          f"| {rss:.0f} | {each} |",
                          flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
