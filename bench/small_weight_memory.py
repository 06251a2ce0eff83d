#!/usr/bin/env python3
"""Memory held by a few small weights kept after a load (issue 12, item 2).

Loads a checkpoint with stload's iterator (pread, 8 threads) in a fresh process, keeps only the
weights whose names match --keep (default: the FP8 block scales, ``weight_scale_inv``), closes
the iterator, and reports the process's resident memory then, less what it was before loading,
against the bytes of the weights kept. Also: the same with only the first matching weight kept.

  stload make-checkpoint /tmp/ds1g --preset deepseek --total 1GiB
  PYTHONPATH=build/python /usr/bin/python3 bench/small_weight_memory.py /tmp/ds1g
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import subprocess
import sys


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def child(path: str, keep: str, only_first: bool) -> dict:
    import stload

    pattern = re.compile(keep)
    config = {"enable_multithread_load": True, "num_threads": 8, "disable_mmap": True}
    gc.collect()
    before = rss_bytes()
    kept = {}
    with stload.get_weight_iterator(path, config, framework="stload") as it:
        for name, value in it:
            if pattern.search(name) and not (only_first and kept):
                kept[name] = value
            del value
    gc.collect()
    after = rss_bytes()
    own = sum(v.nbytes for v in kept.values())
    return {"kept": len(kept), "kept_bytes": own, "held_bytes": after - before,
            "beyond_own_bytes": after - before - own}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--keep", default=r"weight_scale_inv$", help="regex of the names to keep")
    p.add_argument("--child", choices=["all", "first"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.checkpoint, args.keep, args.child == "first")))
        return 0
    for mode in ("all", "first"):
        out = subprocess.run([sys.executable, os.path.abspath(__file__), args.checkpoint,
                              "--keep", args.keep, "--child", mode],
                             check=True, capture_output=True, text=True).stdout
        r = json.loads(out)
        print(f"keep {mode:5}: {r['kept']} weights, {r['kept_bytes'] / 2**20:.2f} MiB of their "
              f"own; resident after the load: +{r['held_bytes'] / 2**20:.1f} MiB "
              f"({r['beyond_own_bytes'] / 2**20:.1f} MiB beyond their bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
