#!/usr/bin/env python3
"""Python consumer vs the CLI's stream consumer (issue 5's "Done when"), warm page cache.

For each read path, alternates runs of
  stload load CKPT --consumer stream --threads T --mmap|--no-mmap --no-progress --json
and a Python loop over stload.multi_thread_safetensors_weights_iterator(files, max_workers=T,
disable_mmap=...) that copies each array into one preallocated, already-touched numpy buffer (the
size of the largest tensor) and drops it, each in a fresh process; then prints the medians (GB/s
of tensor bytes) and the ratio Python / CLI. The Python clock includes opening the files.

Example (from the repository root, after building into build-py/):
  PYTHONPATH=build-py/python python3 bench/measure_python.py build-py /tmp/py4g --repeat 3
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

PATH_FLAGS = {"mmap": "--mmap", "pread": "--no-mmap"}


def shard_files(checkpoint: str) -> list[str]:
    return sorted(glob.glob(os.path.join(checkpoint, "*.safetensors")))


def warm(files: list[str]) -> None:
    """Reads every file once so that every run finds it in the page cache."""
    for name in files:
        with open(name, "rb") as f:
            while f.read(1 << 24):
                pass


def python_run(checkpoint: str, threads: int, disable_mmap: bool) -> dict:
    """One measured Python load (run in its own process by --python-run)."""
    import numpy

    import stload

    files = shard_files(checkpoint)
    largest = max(t["data_offsets"][1] - t["data_offsets"][0]
                  for f in files for t in stload.inspect(f)["tensors"])
    destination = numpy.empty(largest, numpy.uint8)
    destination.fill(0)  # touched before the clock starts, as the CLI's destination is
    total = 0
    start = time.perf_counter()
    it = stload.multi_thread_safetensors_weights_iterator(files, max_workers=threads,
                                                          disable_mmap=disable_mmap,
                                                          framework="stload")
    for _name, value in it:
        raw = value.numpy() if isinstance(value, stload.Tensor) else value
        flat = raw.reshape(-1).view(numpy.uint8)
        numpy.copyto(destination[:flat.size], flat)
        total += flat.size
        del value, raw, flat  # drop the weight before waiting for the next one
    seconds = time.perf_counter() - start
    return {"bytes": total, "seconds": seconds, "gb_per_s": total / seconds / 1e9,
            "read_path": it.stats["read_path"], "threads": it.stats["threads"]}


def cli_run(build: str, checkpoint: str, threads: int, path: str) -> dict:
    cmd = [os.path.join(build, "tools", "stload"), "load", checkpoint, "--consumer", "stream",
           "--threads", str(threads), PATH_FLAGS[path], "--no-progress", "--json"]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def python_subprocess(checkpoint: str, threads: int, path: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--python-run", checkpoint,
           "--threads", str(threads), "--path", path]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build", nargs="?", help="build directory (holds tools/stload)")
    ap.add_argument("checkpoint")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--paths", default="mmap,pread", help="read paths: mmap, pread")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--python-run", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--path", default="mmap", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.python_run:
        print(json.dumps(python_run(args.checkpoint, args.threads, args.path == "pread")))
        return

    files = shard_files(args.checkpoint)
    warm(files)
    print(f"checkpoint {args.checkpoint}: {len(files)} files, "
          f"{sum(os.path.getsize(f) for f in files) / 2**30:.2f} GiB, warm; "
          f"{args.threads} threads; medians of {args.repeat}")
    print("| read path | CLI stream GB/s (runs) | Python GB/s (runs) | Python / CLI |")
    print("|---|---|---|---|")
    for path in args.paths.split(","):
        cli, py = [], []
        for _ in range(args.repeat):  # alternate, so that noise hits both alike
            cli.append(cli_run(args.build, args.checkpoint, args.threads, path)["gb_per_s"])
            run = python_subprocess(args.checkpoint, args.threads, path)
            assert run["read_path"] == path, run
            py.append(run["gb_per_s"])
        c, p = statistics.median(cli), statistics.median(py)
        runs = lambda xs: ", ".join(f"{x:.2f}" for x in xs)  # noqa: E731
        print(f"| {path} | {c:.2f} ({runs(cli)}) | {p:.2f} ({runs(py)}) | {p / c:.0%} |",
              flush=True)


if __name__ == "__main__":
    main()
