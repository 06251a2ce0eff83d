#!/usr/bin/env python3
"""How fast Python gets weights into an engine's parameters, against the CLI (issue 12, item 8).

Three ways to fill preallocated, already-touched CPU parameters with every tensor of a
checkpoint, each run in a fresh process, taking turns in one session:

  cli        stload load CKPT --consumer prealloc --json --no-progress --threads T --no-mmap
             (LoadInto into one touched, huge-page-advised region: the limit for Python)
  load_into  stload.load_into(CKPT, params, {"enable_multithread_load": True, "num_threads": T,
             "disable_mmap": True})
  copy_      the engine pattern: for name, w in stload.get_weight_iterator(CKPT, <same config>):
             params[name].copy_(w), done as a copy_ of the weight's bytes into the parameter's
             (torch 1.13 has no FP8 dtypes; the copy is the same)

The parameters are torch tensors of each tensor's dtype (uint8 of its size where this torch lacks
the dtype), allocated and touched (zero_()) before the clock starts, as a model's are after its
constructor ran. The clock covers opening the checkpoint and the load. Before every warm run the
files are read once; before every cold run the page cache is dropped (root). Reported: the
median seconds of --repeat runs of each, and GB/s of tensor bytes, and each Python way's speed
as a fraction of the CLI's in the same run. Goals (issue 12): load_into >= 0.95, copy_ >= 0.80.

  PYTHONPATH=build/python /usr/bin/python3 bench/python_engine_patterns.py \\
      --cli build/tools/stload --checkpoint /tmp/ckpt --threads 8 --repeat 5 --cache warm,cold

Needs torch (Debian: python3-torch) in the interpreter that runs it. Standard library otherwise.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import time

WAYS = ("cli", "load_into", "copy_")


def data_files(checkpoint: str) -> list[str]:
    if os.path.isdir(checkpoint):
        return sorted(glob.glob(os.path.join(checkpoint, "*.safetensors")))
    return [checkpoint]


def warm(files: list[str]) -> None:
    buffer = bytearray(16 << 20)
    view = memoryview(buffer)
    for path in files:
        with open(path, "rb", buffering=0) as f:
            while f.readinto(view):
                pass


def drop_cache() -> None:
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def python_run(way: str, checkpoint: str, threads: int) -> dict:
    """One measured load, in this (fresh) process."""
    import torch

    import stload

    names = stload._frameworks.TORCH_DTYPE_NAMES
    params = {}
    total = 0
    for t in stload.inspect(checkpoint)["tensors"]:
        size = t["data_offsets"][1] - t["data_offsets"][0]
        dtype = getattr(torch, names.get(t["dtype"], ""), None)
        if dtype is None or t["dtype"] == "F4":
            p = torch.empty(size, dtype=torch.uint8)
        else:
            p = torch.empty(t["shape"], dtype=dtype)
        p.zero_()  # touched, as a constructed model's parameters are
        params[t["name"]] = p
        total += size
    config = {"enable_multithread_load": True, "num_threads": threads, "disable_mmap": True}
    start = time.perf_counter()
    if way == "load_into":
        stats = stload.load_into(checkpoint, params, config)
        read_path = stats["read_path"]
    else:
        # framework="pt" where torch has every dtype; raw bytes otherwise (torch 1.13 has no FP8),
        # copied the same way: one copy_ of the weight's bytes into the parameter's.
        import numpy
        import warnings

        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        it = stload.get_weight_iterator(checkpoint, config, framework="stload")
        for name, w in it:
            raw = w.numpy() if isinstance(w, stload.Tensor) else w
            src = torch.from_numpy(raw.reshape(-1).view(numpy.uint8))
            params[name].reshape(-1).view(torch.uint8).copy_(src)
            del w, raw, src
        read_path = it.stats["read_path"]
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "bytes": total, "read_path": read_path}


def measure(way: str, args) -> dict:
    if way == "cli":
        cmd = [args.cli, "load", args.checkpoint, "--consumer", "prealloc", "--json",
               "--no-progress", "--threads", str(args.threads), "--no-mmap"]
        out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        return {"seconds": out["seconds"], "bytes": out["bytes"], "read_path": out.get("read_path")}
    cmd = [sys.executable, os.path.abspath(__file__), "--run", way, "--checkpoint",
           args.checkpoint, "--threads", str(args.threads)]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cli", help="the stload binary (build/tools/stload)")
    p.add_argument("--checkpoint", required=True, help="a checkpoint (file or directory)")
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--cache", default="warm,cold", help="warm, cold or warm,cold")
    p.add_argument("--json", help="write every sample and the medians here")
    p.add_argument("--run", choices=WAYS[1:], help=argparse.SUPPRESS)  # one measured child
    args = p.parse_args()
    if args.run:
        print(json.dumps(python_run(args.run, args.checkpoint, args.threads)))
        return 0
    if not args.cli:
        p.error("--cli is required")
    caches = args.cache.split(",")
    files = data_files(args.checkpoint)
    samples = {(c, w): [] for c in caches for w in WAYS}
    for cache in caches:
        for rep in range(args.repeat):
            order = WAYS[rep % 3:] + WAYS[:rep % 3]  # each way first, middle and last in turn
            for way in order:
                if cache == "warm":
                    warm(files)
                else:
                    drop_cache()
                s = measure(way, args)
                samples[(cache, way)].append(s)
                print(f"{cache} {way} #{rep + 1}: {s['seconds']:.3f} s", file=sys.stderr)
    rows = []
    print("| cache | way | median s | GB/s | vs cli |\n|---|---|---:|---:|---:|")
    for cache in caches:
        cli = statistics.median(s["seconds"] for s in samples[(cache, "cli")])
        for way in WAYS:
            med = statistics.median(s["seconds"] for s in samples[(cache, way)])
            gbs = samples[(cache, way)][0]["bytes"] / med / 1e9
            rows.append({"cache": cache, "way": way, "median_seconds": med, "gb_per_s": gbs,
                         "fraction_of_cli": cli / med})
            print(f"| {cache} | {way} | {med:.3f} | {gbs:.2f} | {cli / med:.2f} |")
    print(f"\n{args.repeat} runs each, {args.threads} threads, pread, {args.checkpoint}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "samples": {f"{c}/{w}": v for (c, w), v in samples.items()},
                       "threads": args.threads, "repeat": args.repeat}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
