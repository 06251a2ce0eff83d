#!/usr/bin/env python3
"""Compare the load speed of two stload builds, A and B, run alternately in one session.

A no-regression check for a refactor: build the code before it (A) and after it (B), then

    bench/compare_builds.py --a build-main/tools/stload --b build/tools/stload \\
        --label-a main --label-b refactor --json compare.json --markdown compare.md

Every measurement is one `stload load PATH --json --no-progress --consumer C --threads T
<mode flags>` child process of the build under test, the same command line `stload bench`
gives its children, so both builds do identical work. For each cell (checkpoint, cache, mode,
consumer, threads) the two builds take turns, A B B A A B ... (or A B A B with --pattern abab),
so slow drift of the machine affects both equally. Before each cold run the page cache is
emptied (`sync; echo 3 > /proc/sys/vm/drop_caches`, which needs root) and the build's binary and
shared libraries read back (--cold-program: not); before each warm run the checkpoint's files
are read once, so an earlier run cannot have evicted them.

The report is a Markdown table, one row per cell: the median seconds (the `seconds` the child
reports: the timed load, not process start nor prealloc's setup) of A and of B, B/A, and `ok`
when B/A <= --threshold (1.05), else `SLOWER`. --json writes every raw sample.

Exit status: 0 when every run succeeded (whatever the verdicts); 1 when a run failed (its
command and stderr are printed; the samples so far are still written); 2 for a usage error.

Python 3 standard library only.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

MODES = {
    # The flags `stload bench` passes for its modes (tools/bench_command.cc, ModeFlags), plus
    # O_DIRECT reads submitted through io_uring, which `stload load` also takes.
    "pread": ["--no-mmap"],
    "mmap": ["--mmap"],
    "direct": ["--direct-io"],
    "uring": ["--no-mmap", "--io-uring"],
    "direct+uring": ["--direct-io", "--io-uring"],
}
CONSUMERS = ["prealloc", "stream", "keep"]
CACHES = ["warm", "cold"]
CHECKPOINTS = {
    # name: (make-checkpoint preset, default total bytes, default shards)
    "sharded": ("llama", 4 << 30, 8),
    "single": ("single-file", 2 << 30, 1),
}
DROP_CACHES = "/proc/sys/vm/drop_caches"
STAMP_VERSION = 1


class UsageError(Exception):
    pass


class RunFailed(Exception):
    def __init__(self, command, returncode, stderr, why=""):
        super().__init__(why or f"exit status {returncode}")
        self.command = command
        self.returncode = returncode
        self.stderr = stderr
        self.why = why


# --- flags -----------------------------------------------------------------------------------


def parse_size(text: str) -> int:
    """`stload`'s sizes: 4096, 64KiB, 512MiB, 2GiB (K, M, G, T: powers of 1024), 1GB (1000)."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(i?B?)\s*", text, re.IGNORECASE)
    if not m:
        raise UsageError(f"'{text}' is not a size such as 4096, 256MiB or 4GiB")
    value, unit, suffix = int(m.group(1)), m.group(2).upper(), m.group(3)
    power = "KMGT".find(unit) + 1 if unit else 0
    base = 1000 if suffix.upper() == "B" and unit else 1024
    return value * base**power


def format_size(n: int) -> str:
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return str(n)


def parse_list(flag: str, text: str, allowed) -> list[str]:
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items:
        raise UsageError(f"{flag} needs at least one of {', '.join(allowed)}")
    for item in items:
        if item not in allowed:
            raise UsageError(f"{flag}: '{item}' is not one of {', '.join(allowed)}")
    if len(set(items)) != len(items):
        raise UsageError(f"{flag}: '{text}' names an item twice")
    return items


def parse_threads(text: str) -> list[int]:
    counts = []
    for item in [s.strip() for s in text.split(",") if s.strip()]:
        if not item.isdigit() or not 1 <= int(item) <= 4096:
            raise UsageError(f"--threads: '{item}' is not a thread count from 1 to 4096")
        counts.append(int(item))
    if not counts:
        raise UsageError("--threads needs at least one thread count, e.g. 1,2,8")
    return counts


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="compare_builds.py",
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Compare two stload builds (A: before, B: after) run alternately in the same session,\n"
            "on a 4 GiB checkpoint of 8 shards and a 2 GiB single file, warm and cold page cache,\n"
            "every read mode, consumer and thread count. Prints a Markdown table of median\n"
            "seconds per cell with B/A and a verdict (ok when B/A <= --threshold, else SLOWER)."
        ),
        epilog=(
            "Each run is one `stload load PATH --json --no-progress --consumer C --threads T\n"
            "<mode flags>` child of the build under test, as `stload bench` runs its children.\n"
            "Mode flags: pread --no-mmap; mmap --mmap; direct --direct-io;\n"
            "uring --no-mmap --io-uring; direct+uring --direct-io --io-uring. A mode the system\n"
            "refuses falls back inside stload; the table marks it with '*'.\n"
            "Cold runs need root (drop_caches), or --cache-drop fadvise.\n\n"
            "The checkpoints are written with A's `stload make-checkpoint` into --data-dir\n"
            "(sharded: --preset llama --shards 8; single: --preset single-file) and reused by\n"
            "later runs when their size, shards and file sizes still match.\n\n"
            "Exit status: 0 when every run succeeded, whatever the verdicts; 1 when a run\n"
            "failed (the failing command and its stderr are printed, the samples so far are\n"
            "still written); 2 for a usage error.\n\n"
            "Quick smoke run (the same build as A and B, small checkpoints):\n"
            "  bench/compare_builds.py --a build/tools/stload --b build/tools/stload \\\n"
            "      --sizes 128MiB --repeat 1 --threads 1,2"
        ),
    )
    p.add_argument("--a", required=True, metavar="STLOAD", help="the stload binary of build A (the baseline)")
    p.add_argument("--b", required=True, metavar="STLOAD", help="the stload binary of build B (the candidate)")
    p.add_argument("--label-a", default="A", help="name of build A in the report (default: A)")
    p.add_argument("--label-b", default="B", help="name of build B in the report (default: B)")
    p.add_argument("--threads", default="1,2,8", metavar="N,N,...", help="thread counts (default: 1,2,8)")
    p.add_argument("--modes", default=",".join(MODES), metavar="MODE,...",
                   help=f"read modes, comma-separated (default: {','.join(MODES)})")
    p.add_argument("--consumers", default=",".join(CONSUMERS), metavar="C,...",
                   help="consumers as `stload load` defines them (default: prealloc,stream,keep)")
    p.add_argument("--cache", default="warm,cold", metavar="warm,cold",
                   help="page-cache states (default: warm,cold)")
    p.add_argument("--checkpoints", default="sharded,single", metavar="NAME,...",
                   help="checkpoints: sharded (4 GiB, 8 shards, with index), single (2 GiB, one "
                        "file) (default: sharded,single)")
    p.add_argument("--sizes", metavar="SIZE[,SIZE]",
                   help="total tensor bytes of the checkpoints instead of 4GiB (sharded) and 2GiB "
                        "(single): one size for both, or sharded,single (e.g. 256MiB or 1GiB,512MiB)")
    p.add_argument("--shards", type=int, default=8, metavar="K", help="shards of the sharded checkpoint (default: 8)")
    p.add_argument("--repeat", type=int, default=5, metavar="N",
                   help="repetitions per build and cell; medians are reported (default: 5)")
    p.add_argument("--pattern", choices=["abba", "abab"], default="abba",
                   help="turn order per repetition: abba (A B, B A, A B, ...) or abab (default: abba)")
    p.add_argument("--threshold", type=float, default=1.05, metavar="R",
                   help="largest B/A that is still 'ok' (default: 1.05)")
    p.add_argument("--data-dir", metavar="DIR",
                   help="where the checkpoints are written and reused (default: "
                        "stload-compare-data in the system's temporary directory)")
    p.add_argument("--cache-drop", choices=["drop_caches", "fadvise"], default="drop_caches",
                   help="how cold runs empty the cache: drop_caches (sync; echo 3 > "
                        "/proc/sys/vm/drop_caches, root) or fadvise (posix_fadvise DONTNEED on the "
                        "checkpoint's files) (default: drop_caches)")
    p.add_argument("--cold-program", action="store_true",
                   help="cold runs start with the program cold too; by default each build's "
                        "binary and shared libraries are read back into the page cache after the "
                        "drop, so that a cold run times the checkpoint's reads, not page faults "
                        "on the program's code (which differ with code layout)")
    p.add_argument("--timeout", type=float, default=3600, metavar="S",
                   help="seconds one child may run before it counts as failed (default: 3600)")
    p.add_argument("--json", metavar="OUT", help="write the settings, every raw sample and the medians to OUT")
    p.add_argument("--markdown", metavar="OUT", help="write the Markdown report to OUT (it is printed to stdout too)")
    return p


# --- binaries and checkpoints ----------------------------------------------------------------


def check_binary(flag: str, path: str, modes: list[str]) -> dict:
    if not os.path.exists(path):
        raise UsageError(f"{flag}: {path}: no such file (build it first, e.g. scripts/build.sh)")
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        raise UsageError(f"{flag}: {path}: not an executable file")
    binary = os.path.abspath(path)
    try:
        version = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60)
        helptext = subprocess.run([binary, "load", "--help"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        raise UsageError(f"{flag}: {path}: cannot run it: {e}")
    if helptext.returncode != 0 or "--consumer" not in helptext.stdout:
        raise UsageError(f"{flag}: {path}: `load --help` failed or lists no --consumer: is it stload?"
                         + ("\n" + helptext.stderr.strip() if helptext.stderr.strip() else ""))
    needed = {"--json", "--no-progress", "--threads"}
    for m in modes:
        needed.update(MODES[m])
    missing = sorted(f for f in needed if f not in helptext.stdout)
    if missing:
        raise UsageError(f"{flag}: {path}: `stload load` of this build lacks {', '.join(missing)}, "
                         f"needed by --modes {','.join(modes)}")
    return {"path": path, "version": (version.stdout.strip() or version.stderr.strip())}


def checkpoint_files(ckpt_dir: str) -> dict[str, int]:
    return {name: os.path.getsize(os.path.join(ckpt_dir, name))
            for name in sorted(os.listdir(ckpt_dir)) if os.path.isfile(os.path.join(ckpt_dir, name))}


def ensure_checkpoint(binary: str, data_dir: str, name: str, total: int, shards: int) -> dict:
    """Writes the checkpoint unless an earlier run left one of the same spec, and returns it."""
    preset = CHECKPOINTS[name][0]
    spec = {"version": STAMP_VERSION, "preset": preset, "total": total, "shards": shards, "seed": 0}
    dirname = f"{name}-{format_size(total)}" + (f"-{shards}shards" if name == "sharded" else "")
    ckpt_dir = os.path.join(data_dir, dirname)
    stamp_path = ckpt_dir + ".stamp.json"
    if os.path.isdir(ckpt_dir) and os.path.isfile(stamp_path):
        try:
            with open(stamp_path) as f:
                stamp = json.load(f)
            if stamp.get("spec") == spec and stamp.get("files") == checkpoint_files(ckpt_dir):
                print(f"reusing {ckpt_dir}", file=sys.stderr)
                return finish_checkpoint(name, ckpt_dir, stamp["files"], spec)
        except (OSError, ValueError):
            pass
    if os.path.exists(stamp_path):
        os.remove(stamp_path)
    command = [binary, "make-checkpoint", ckpt_dir, "--preset", preset, "--total", str(total),
               "--seed", "0", "--force"]
    if name == "sharded":
        command += ["--shards", str(shards)]
    if os.path.isdir(ckpt_dir):  # an old or partial one: write the checkpoint afresh
        for entry in os.listdir(ckpt_dir):
            path = os.path.join(ckpt_dir, entry)
            if entry.endswith((".safetensors", ".index.json")) and os.path.isfile(path):
                os.remove(path)
    print(f"writing {ckpt_dir} ({format_size(total)})", file=sys.stderr)
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RunFailed(command, result.returncode, result.stderr, "make-checkpoint failed")
    files = checkpoint_files(ckpt_dir)
    with open(stamp_path, "w") as f:
        json.dump({"spec": spec, "files": files}, f, indent=2)
    return finish_checkpoint(name, ckpt_dir, files, spec)


def finish_checkpoint(name: str, ckpt_dir: str, files: dict[str, int], spec: dict) -> dict:
    # The sharded checkpoint is loaded as its directory (with its index); the single one as the
    # file itself.
    load_path = ckpt_dir if name == "sharded" else os.path.join(ckpt_dir, "model.safetensors")
    data_files = [os.path.join(ckpt_dir, n) for n in files if n.endswith(".safetensors")]
    return {"name": name, "dir": ckpt_dir, "load_path": load_path, "files": data_files,
            "file_bytes": sum(files[n] for n in files if n.endswith(".safetensors")),
            "spec": spec}


# --- page cache -------------------------------------------------------------------------------


def drop_cache(files: list[str], method: str) -> None:
    if method == "drop_caches":
        os.sync()
        with open(DROP_CACHES, "w") as f:
            f.write("3\n")
        return
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def program_files(binary: str) -> list[str]:
    """The binary and the shared libraries it loads (as ldd lists them)."""
    files = [binary]
    try:
        out = subprocess.run(["ldd", binary], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return files
    for line in out.splitlines():
        m = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
        if m and os.path.isfile(m.group(1)):
            files.append(m.group(1))
    return files


def warm_cache(files: list[str], buffer: bytearray) -> None:
    view = memoryview(buffer)
    for path in files:
        with open(path, "rb", buffering=0) as f:
            while f.readinto(view):
                pass


# --- runs -------------------------------------------------------------------------------------


def child_command(binary: str, load_path: str, consumer: str, mode: str, threads: int) -> list[str]:
    # As `stload bench` builds it (tools/bench_command.cc, RunOne).
    return [binary, "load", load_path, "--json", "--no-progress", "--consumer", consumer,
            "--threads", str(threads)] + MODES[mode]


def run_child(command: list[str], timeout: float) -> tuple[dict, float]:
    start = time.monotonic()
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        stderr = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        raise RunFailed(command, None, stderr, f"timed out after {timeout:g} s")
    wall = time.monotonic() - start
    if result.returncode != 0:
        raise RunFailed(command, result.returncode, result.stderr)
    try:
        report = json.loads(result.stdout)
        if not isinstance(report.get("seconds"), (int, float)):
            raise ValueError("no 'seconds'")
    except (ValueError, AttributeError) as e:
        raise RunFailed(command, result.returncode, result.stderr,
                        f"printed no complete JSON report ({e}): {result.stdout[:500]!r}")
    if result.stderr.strip():
        report["stderr"] = result.stderr.strip()  # warnings, e.g. a refused O_DIRECT
    return report, wall


def fell_back(mode: str, report: dict) -> bool:
    direct = "direct" in mode and report.get("read_path") != "direct"
    uring = "uring" in mode and not report.get("io_uring", False)
    return direct or uring


def turn_order(rep: int, pattern: str) -> list[str]:
    return ["a", "b"] if pattern == "abab" or rep % 2 == 0 else ["b", "a"]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def run_matrix(args, builds, checkpoints, caches, modes, consumers, threads, samples, cells):
    buffer = bytearray(16 << 20)
    total_cells = len(checkpoints) * len(caches) * len(modes) * len(consumers) * len(threads)
    done = 0
    for ckpt in checkpoints:
        for cache in caches:
            if cache == "warm":
                warm_cache(ckpt["files"], buffer)
            for consumer in consumers:
                for mode in modes:
                    for t in threads:
                        done += 1
                        cell = {"checkpoint": ckpt["name"], "cache": cache, "consumer": consumer,
                                "mode": mode, "threads": t, "seconds": {"a": [], "b": []},
                                "fell_back": {"a": False, "b": False},
                                "read_path": {"a": None, "b": None},
                                "threads_started": {"a": 0, "b": 0}}
                        cells.append(cell)
                        for rep in range(args.repeat):
                            for turn in turn_order(rep, args.pattern):
                                command = child_command(builds[turn]["binary"], ckpt["load_path"],
                                                        consumer, mode, t)
                                if cache == "cold":
                                    drop_cache(ckpt["files"], args.cache_drop)
                                    if not args.cold_program:
                                        warm_cache(builds[turn]["program"], buffer)
                                else:
                                    warm_cache(ckpt["files"], buffer)
                                report, wall = run_child(command, args.timeout)
                                samples.append({
                                    "checkpoint": ckpt["name"], "cache": cache, "consumer": consumer,
                                    "mode": mode, "threads": t, "build": turn,
                                    "label": builds[turn]["label"], "repetition": rep,
                                    "command": shlex.join(command), "seconds": report["seconds"],
                                    "wall_seconds": wall, "report": report,
                                })
                                cell["seconds"][turn].append(report["seconds"])
                                if fell_back(mode, report):
                                    cell["fell_back"][turn] = True
                                    for line in report.get("stderr", "").splitlines():
                                        if line not in cell.setdefault("warnings", []):
                                            cell["warnings"].append(line)
                                cell["read_path"][turn] = report.get("read_path")
                                cell["threads_started"][turn] = max(cell["threads_started"][turn],
                                                                    int(report.get("threads", 0)))
                        a, b = median(cell["seconds"]["a"]), median(cell["seconds"]["b"])
                        cell["median_a"], cell["median_b"] = a, b
                        cell["ratio"] = b / a if a > 0 else float("inf")
                        cell["verdict"] = "ok" if cell["ratio"] <= args.threshold else "SLOWER"
                        print(f"[{done}/{total_cells}] {ckpt['name']} {cache} {consumer} {mode} "
                              f"{t}t: {builds['a']['label']} {a:.4f} s, {builds['b']['label']} "
                              f"{b:.4f} s, B/A {cell['ratio']:.3f} {cell['verdict']}",
                              file=sys.stderr, flush=True)


# --- report -----------------------------------------------------------------------------------


def markdown(args, builds, checkpoints, cells, failure) -> str:
    la, lb = builds["a"]["label"], builds["b"]["label"]
    lines = [f"# stload: {lb} vs {la}", ""]
    lines.append(f"- A `{la}`: `{builds['a']['path']}` ({builds['a']['version']})")
    lines.append(f"- B `{lb}`: `{builds['b']['path']}` ({builds['b']['version']})")
    for c in checkpoints:
        lines.append(f"- {c['name']}: {len(c['files'])} file(s), {format_size(c['spec']['total'])} "
                     f"asked, {c['file_bytes']} bytes on disk")
    lines.append(f"- {args.repeat} repetition(s) per build and cell, turns {args.pattern.upper()}; "
                 f"cold: {args.cache_drop}; {os.cpu_count()} CPUs, {platform.system()} "
                 f"{platform.release()}; {datetime.datetime.now().isoformat(timespec='seconds')}")
    lines.append(f"- seconds: median of the `seconds` each `stload load --json` child reports; "
                 f"`ok` when B/A <= {args.threshold:g}")
    lines.append("")
    lines.append(f"| checkpoint | cache | mode | consumer | threads | {la} s | {lb} s | B/A | verdict |")
    lines.append("|---|---|---|---|---:|---:|---:|---:|---|")
    for c in cells:
        if "ratio" not in c:
            continue
        mode = c["mode"] + ("*" if c["fell_back"]["a"] or c["fell_back"]["b"] else "")
        if c["read_path"]["a"] != c["read_path"]["b"]:
            mode += f" (paths differ: {c['read_path']['a']} / {c['read_path']['b']})"
        started = max(c["threads_started"].values())
        threads = str(c["threads"]) + (f" ({started})" if started and started != c["threads"] else "")
        lines.append(f"| {c['checkpoint']} | {c['cache']} | {mode} | {c['consumer']} | {threads} | "
                     f"{c['median_a']:.4f} | {c['median_b']:.4f} | {c['ratio']:.3f} | {c['verdict']} |")
    done = [c for c in cells if "ratio" in c]
    slower = [c for c in done if c["verdict"] != "ok"]
    lines.append("")
    if any(c["fell_back"]["a"] or c["fell_back"]["b"] for c in done):
        lines.append("\\* stload did not take this path (refused by the system or not supported for "
                     "this consumer) and fell back; what the children said:")
        for warning in sorted({w for c in done for w in c.get("warnings", [])}):
            lines.append(f"  - `{warning}`")
    if any(max(c["threads_started"].values()) != c["threads"] for c in done):
        lines.append("A thread count in parentheses is how many threads the loader started.")
    lines.append(f"{len(done)} cells, {len(slower)} SLOWER (B/A > {args.threshold:g}).")
    if failure:
        lines.append(f"\nINCOMPLETE: a run failed: `{shlex.join(failure.command)}`")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        threads = parse_threads(args.threads)
        modes = parse_list("--modes", args.modes, list(MODES))
        consumers = parse_list("--consumers", args.consumers, CONSUMERS)
        caches = parse_list("--cache", args.cache, CACHES)
        names = parse_list("--checkpoints", args.checkpoints, list(CHECKPOINTS))
        if args.repeat < 1:
            raise UsageError("--repeat must be at least 1")
        if args.shards < 1:
            raise UsageError("--shards must be at least 1")
        if args.timeout <= 0:
            raise UsageError("--timeout must be positive")
        sizes = {n: CHECKPOINTS[n][1] for n in CHECKPOINTS}
        if args.sizes:
            try:
                given = [parse_size(s) for s in args.sizes.split(",")]
            except UsageError as e:
                raise UsageError(f"--sizes: {e}")
            if len(given) not in (1, 2):
                raise UsageError("--sizes takes one size, or two: sharded,single")
            sizes = {"sharded": given[0], "single": given[-1]}
            for n, s in sizes.items():
                if not (1 << 20) <= s <= (1 << 40):
                    raise UsageError(f"--sizes: {format_size(s)} for {n} is not from 1MiB to 1TiB")
        if "cold" in caches and args.cache_drop == "drop_caches" and not os.access(DROP_CACHES, os.W_OK):
            raise UsageError(f"cold runs write {DROP_CACHES}, which needs root: run as root, "
                             "pass --cache-drop fadvise, or --cache warm")
        if args.label_a == args.label_b:
            raise UsageError("--label-a and --label-b must differ")
        builds = {}
        for key, flag, label in (("a", "--a", args.label_a), ("b", "--b", args.label_b)):
            info = check_binary(flag, getattr(args, key), modes)
            builds[key] = {**info, "binary": os.path.abspath(getattr(args, key)), "label": label}
            builds[key]["program"] = program_files(builds[key]["binary"])
        for out in (args.json, args.markdown):
            if out is not None and (not out or os.path.isdir(out)):
                raise UsageError(f"'{out}' is not a file name to write")
    except UsageError as e:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2

    data_dir = args.data_dir or os.path.join(tempfile.gettempdir(), "stload-compare-data")
    os.makedirs(data_dir, exist_ok=True)
    samples, cells, checkpoints, failure = [], [], [], None
    try:
        for n in names:
            checkpoints.append(ensure_checkpoint(builds["a"]["binary"], data_dir, n, sizes[n],
                                                 args.shards if n == "sharded" else 1))
        run_matrix(args, builds, checkpoints, caches, modes, consumers, threads, samples, cells)
    except RunFailed as e:
        failure = e
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

    report = markdown(args, builds, checkpoints, cells, failure)
    print(report, end="")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(report)
    if args.json:
        out = {
            "builds": {k: {kk: v for kk, v in b.items() if kk not in ("binary", "program")}
                       for k, b in builds.items()},
            "settings": {"threads": threads, "modes": modes, "consumers": consumers,
                         "caches": caches, "checkpoints": names, "repeat": args.repeat,
                         "pattern": args.pattern, "threshold": args.threshold,
                         "cache_drop": args.cache_drop, "mode_flags": {m: MODES[m] for m in modes}},
            "host": {"cpus": os.cpu_count(), "kernel": f"{platform.system()} {platform.release()}",
                     "date": datetime.datetime.now().isoformat(timespec="seconds")},
            "checkpoints": checkpoints,
            "cells": cells,
            "samples": samples,
        }
        if failure:
            out["failure"] = {"command": shlex.join(failure.command),
                              "returncode": failure.returncode, "why": str(failure),
                              "stderr": failure.stderr}
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
            f.write("\n")
    if failure:
        print(f"\n{parser.prog}: error: a run failed ({failure}):\n  {shlex.join(failure.command)}",
              file=sys.stderr)
        if failure.stderr and failure.stderr.strip():
            print("its stderr:\n" + failure.stderr.rstrip(), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
