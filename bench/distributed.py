#!/usr/bin/env python3
"""Distributed loading against N independent loads, in the same run (issue 14, part 6).

For each N and each case (full load; rank-aware TP=N), runs N ranks under mpirun twice: every
rank loading on its own (`--mode independent`) and the ranks loading together
(`--mode distributed`), warm, optionally through a storage throttle that all ranks share
(`--throttle-mbps`, as a network file system's bandwidth is shared). Reports medians of
--repeat runs: seconds of the slowest rank, bytes all ranks read through read(2) (/proc/self/io
rchar), the largest peak RSS, and the time ratio distributed / independent.

    build/tools/stload make-checkpoint /tmp/ll1g --preset llama --total 1GiB
    python3 bench/distributed.py build /tmp/ll1g --ranks 2,4 --throttle-mbps 0,250 --repeat 3
"""
import argparse
import json
import os
import statistics
import subprocess
import sys


def run(bench, path, ranks, mode, throttle, tp, timeout):
    cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--quiet", "-np", str(ranks),
           bench, path, "--mode", mode, "--throttle-mbps", str(throttle)]
    if tp:
        cmd.append("--tp")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build")
    ap.add_argument("path")
    ap.add_argument("--ranks", default="2,4")
    ap.add_argument("--throttle-mbps", default="0,250")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--timeout", type=int, default=600)
    args = ap.parse_args()
    bench = os.path.join(args.build, "bench", "stload_distributed_bench")
    if not os.path.exists(bench):
        sys.exit(f"{bench} not found (build with STLOAD_WITH_MPI=ON)")
    print("| N | case | throttle MB/s | independent s | distributed s | distributed/independent "
          "| read(2) bytes indep. | read(2) bytes distr. | peak RSS indep. | peak RSS distr. |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for throttle in [float(t) for t in args.throttle_mbps.split(",")]:
        for n in [int(x) for x in args.ranks.split(",")]:
            for tp in (False, True):
                got = {"independent": [], "distributed": []}
                for _ in range(args.repeat):  # alternating, so drift hits both alike
                    for mode in got:
                        got[mode].append(run(bench, args.path, n, mode, throttle, tp, args.timeout))
                med = {m: statistics.median(r["seconds"] for r in got[m]) for m in got}
                rchar = {m: statistics.median(r["rchar_all_ranks"] for r in got[m]) for m in got}
                rss = {m: max(r["peak_rss_max"] for r in got[m]) for m in got}
                print(f"| {n} | {'tp=' + str(n) if tp else 'full'} | {throttle:g} | "
                      f"{med['independent']:.3f} | {med['distributed']:.3f} | "
                      f"{med['distributed'] / med['independent']:.2f} | "
                      f"{rchar['independent'] / 2**20:.0f} MiB | {rchar['distributed'] / 2**20:.0f} MiB | "
                      f"{rss['independent'] / 2**20:.0f} MiB | {rss['distributed'] / 2**20:.0f} MiB |",
                      flush=True)


if __name__ == "__main__":
    main()
