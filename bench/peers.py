#!/usr/bin/env python3
"""stload next to the loaders a user would pick instead, on one checkpoint, in one run (issue 15).

Measures, warm and cold, with rows interleaved (each repetition is one round over every loader and
consumer, starting one loader later than the last round, so drift of the machine hits all alike),
medians of --repeats:

  - Hugging Face safetensors: safetensors.numpy.load_file per shard, safetensors.torch.load_file
    per shard, safe_open(..., framework="pt") + get_tensor per tensor;
  - the original loader's algorithm as its engine (FastDeploy) runs it: a
    ThreadPoolExecutor(max_workers=N) that submits safetensors.paddle.load_file(shard) per shard,
    consumed with as_completed, at N=8 and at the N fastest for it (a sweep of 1,2,4,8 once,
    warm, before the timed rounds); and its disable_mmap branch,
    safetensors.paddle.load(open(shard, "rb").read()) per shard in the same pool (N=8);
  - Run:ai Model Streamer (SafetensorsStreamer, CPU), RUNAI_STREAMER_CONCURRENCY swept 1,2,4,8
    once, warm; the fastest is timed;
  - fastsafetensors on CPU without GPU-Direct (nogds=True, device="cpu");
  - torch.load(mmap=True) of the weights saved as .bin (skipped when the torch lacks mmap=True);
  - stload: `stload load PATH --consumer C --json --no-progress` with no options, with
    --threads 2 and with --threads 8 --direct-io (its reported `seconds`: the timed load, not
    prealloc's setup), and Python stload.load_into (prealloc) / stload.get_weight_iterator
    (stream), both with the default load config;
  - the limits: read() of every byte of the shards into a reused 16 MiB buffer per thread, 2
    threads (warm: from the page cache; cold: after drop_caches), and cold with O_DIRECT.

Consumers (the work `stload load --consumer` does): prealloc: a destination for every tensor
(numpy uint8) allocated and touched before the clock starts, each tensor's bytes copied into it;
stream: one reused, touched buffer of the largest tensor's size, each tensor copied into it and
dropped. Every peer runs in a fresh child process (--python) that imports its package and
allocates before the clock starts, then waits; the parent drops the page cache (cold) and starts
the clock in the child, which stops after the last byte is in place. Before the timed rounds each
peer's bytes are checked once, untimed: the SHA-256 of each tensor's bytes must equal
`stload hash PATH --no-progress`. A peer that fails to install, import or run is reported as
skipped with the error's last line; one whose bytes differ as wrong; neither is timed.

Cold runs need root (sync; echo 3 > /proc/sys/vm/drop_caches before every cold run). Before
each warm round the checkpoint's files are read once.

  stload make-checkpoint /tmp/llama4g --preset llama --total 4GiB
  python3 bench/peers.py --setup /tmp/peers-venv        # venv + the peers from PyPI, once
  python3 bench/peers.py --python /tmp/peers-venv/bin/python --stload build/tools/stload \\
      --stload-pythonpath build/python /tmp/llama4g --repeats 3 --prefault 18 \\
      --json peers.json --markdown peers.md

--loaders NAME,... narrows the set (--list-loaders prints the names). Python 3 standard library
in the parent; the children need what each peer needs (numpy everywhere).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import hashlib
import json
import mmap
import os
import platform
import queue
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time

SETUP_PACKAGES = ["safetensors", "numpy", "paddlepaddle", "runai-model-streamer", "fastsafetensors"]
DROP_CACHES = "/proc/sys/vm/drop_caches"
CHUNK = 16 << 20
SWEEP = [1, 2, 4, 8]

# name: (kind, options). kind "py": a child of --python running a peer; "stload": the CLI;
# "limit": a read limit (no consumer). The N of paddle-pool-best and the concurrency of runai are
# decided by the warm sweep.
LOADERS = {
    "stload": ("stload", []),
    "stload --threads 2": ("stload", ["--threads", "2"]),
    "stload --threads 8 --direct-io": ("stload", ["--threads", "8", "--direct-io"]),
    "stload py: load_into / get_weight_iterator": ("py", {"peer": "stload-py"}),
    "safetensors.numpy.load_file": ("py", {"peer": "st-numpy"}),
    "safetensors.torch.load_file": ("py", {"peer": "st-torch"}),
    "safetensors safe_open(pt) get_tensor": ("py", {"peer": "st-safe-open"}),
    "paddle pool load_file N=8": ("py", {"peer": "paddle-pool", "workers": 8}),
    "paddle pool load_file N=best": ("py", {"peer": "paddle-pool", "workers": "best"}),
    "paddle pool disable_mmap N=8": ("py", {"peer": "paddle-pool-nommap", "workers": 8}),
    "runai streamer C=best": ("py", {"peer": "runai", "concurrency": "best"}),
    "fastsafetensors cpu nogds": ("py", {"peer": "fastsafetensors"}),
    "torch.load(mmap=True) .bin": ("py", {"peer": "torch-mmap"}),
}
LIMITS = {
    "limit: read() 2 threads": {"peer": "limit", "direct": False},
    "limit: O_DIRECT read 2 threads": {"peer": "limit", "direct": True},
}


# --- the child: one peer, one consumer ---------------------------------------------------------


def shard_files(path: str) -> list[str]:
    if os.path.isdir(path):
        return sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith(".safetensors"))
    if path.endswith(".index.json"):
        with open(path) as f:
            names = sorted(set(json.load(f)["weight_map"].values()))
        return [os.path.join(os.path.dirname(path), n) for n in names]
    return [path]


def read_layout(files: list[str]) -> dict[str, int]:
    """name -> byte size of every tensor, from the safetensors headers."""
    sizes = {}
    for path in files:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n))
        for name, info in header.items():
            if name != "__metadata__":
                begin, end = info["data_offsets"]
                sizes[name] = end - begin
    return sizes


def u8_numpy(a):
    return a.reshape(-1).view("uint8")


def u8_torch(t):
    import torch
    return t.reshape(-1).view(torch.uint8).numpy()


def u8_paddle(t):
    # Tensor.numpy() copies the tensor into a new numpy array (BF16 comes back as uint16).
    return t.numpy().reshape(-1).view("uint8")


def peer_stream(spec: dict, files: list[str]):
    """The tensors of a peer as (name, uint8 numpy view), each valid until the next is asked for."""
    peer = spec["peer"]
    if peer == "st-numpy":
        from safetensors.numpy import load_file
        for f in files:
            d = load_file(f)
            for k in list(d):
                yield k, u8_numpy(d.pop(k))
    elif peer == "st-torch":
        from safetensors.torch import load_file
        for f in files:
            d = load_file(f)
            for k in list(d):
                yield k, u8_torch(d.pop(k))
    elif peer == "st-safe-open":
        from safetensors import safe_open
        for f in files:
            with safe_open(f, framework="pt") as s:
                for k in s.keys():
                    yield k, u8_torch(s.get_tensor(k))
    elif peer in ("paddle-pool", "paddle-pool-nommap"):
        import safetensors.paddle

        def load_nommap(f):
            with open(f, "rb") as fh:
                return safetensors.paddle.load(fh.read())

        fn = safetensors.paddle.load_file if peer == "paddle-pool" else load_nommap
        with concurrent.futures.ThreadPoolExecutor(max_workers=spec["workers"]) as ex:
            futures = [ex.submit(fn, f) for f in files]
            for fut in concurrent.futures.as_completed(futures):
                d = fut.result()
                for k in list(d):
                    yield k, u8_paddle(d.pop(k))
                del d
    elif peer == "runai":
        from runai_model_streamer import SafetensorsStreamer
        with SafetensorsStreamer() as s:
            s.stream_files(files)  # all shards in one request, as its users call it
            for k, t in s.get_tensors():
                yield k, u8_torch(t)
    elif peer == "fastsafetensors":
        from fastsafetensors import SafeTensorsFileLoader, SingleGroup
        loader = SafeTensorsFileLoader(SingleGroup(), device="cpu", nogds=True)
        try:
            loader.add_filenames({0: files})
            fb = loader.copy_files_to_device()
            try:
                for k in loader.get_keys():
                    yield k, u8_torch(fb.get_tensor(k))
            finally:
                fb.close()
        finally:
            loader.close()
    elif peer == "torch-mmap":
        import torch
        bins = spec.get("bins") or []
        if not bins:
            # The check alone: does this torch take mmap=True? (The .bin files are only written
            # when it does.)
            with tempfile.NamedTemporaryFile(suffix=".bin") as tmp:
                torch.save({"x": torch.zeros(1)}, tmp.name)
                torch.load(tmp.name, mmap=True)
            raise RuntimeError("torch.load takes mmap=True: write the .bin files (not implemented)")
        for b in bins:
            d = torch.load(b, mmap=True, weights_only=True)
            for k in list(d):
                yield k, u8_torch(d.pop(k))
    else:
        raise ValueError(f"unknown peer {peer}")


def stload_py_stream(spec: dict, path: str):
    import stload
    for k, t in stload.get_weight_iterator(path, None, framework="stload"):
        yield k, t.numpy().reshape(-1).view("uint8")


def limit_read(files: list[str], direct: bool, threads: int = 2) -> int:
    """read() of every byte of the files into one reused 16 MiB buffer per thread."""
    work: queue.Queue = queue.Queue()
    step = 4 * CHUNK
    for f in files:
        size = os.path.getsize(f)
        for off in range(0, size, step):
            work.put((f, off, min(step, size - off)))
    done = [0] * threads
    errors = []

    def worker(i: int) -> None:
        buf = mmap.mmap(-1, CHUNK)  # page-aligned, as O_DIRECT wants
        fds = {}
        try:
            while True:
                try:
                    f, off, length = work.get_nowait()
                except queue.Empty:
                    return
                fd = fds.get(f)
                if fd is None:
                    fd = fds[f] = os.open(f, os.O_RDONLY | (os.O_DIRECT if direct else 0))
                end = off + length
                while off < end:
                    n = os.preadv(fd, [buf], off)  # the last, short read of O_DIRECT stops at EOF
                    if n <= 0:
                        break
                    done[i] += min(n, end - off)
                    off += n
        except Exception as e:  # noqa: BLE001 - reported by the parent
            errors.append(e)
        finally:
            for fd in fds.values():
                os.close(fd)
            buf.close()

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]
    return sum(done)


def peak_rss() -> int:
    """VmHWM: this process's peak RSS (ru_maxrss would include the parent's, across exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child_main(spec_json: str) -> None:
    spec = json.loads(spec_json)
    out = {}
    try:
        out = child_run(spec)
    except BaseException as e:  # noqa: BLE001 - the parent reports the reason
        import traceback
        line = traceback.format_exception_only(type(e), e)[-1].strip()
        out = {"error": line}
    out["peak_rss_bytes"] = peak_rss()
    sys.stdout.write("RESULT " + json.dumps(out) + "\n")
    sys.stdout.flush()


def wait_for_go() -> None:
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    if sys.stdin.readline().strip() != "GO":
        raise RuntimeError("the parent did not say GO")


def child_run(spec: dict) -> dict:
    if spec.get("env"):
        os.environ.update(spec["env"])
    files = shard_files(spec["path"])
    if spec["peer"] == "limit":
        wait_for_go()
        start = time.perf_counter()
        n = limit_read(files, spec["direct"])
        return {"seconds": time.perf_counter() - start, "bytes": n}
    import numpy as np
    with open(spec["layout"]) as f:
        sizes = json.load(f)
    mode = spec["consumer"]  # prealloc, stream or hash
    # Import the peer's packages before the clock starts (a failing import is a skip).
    imports = {"st-numpy": ["safetensors.numpy"], "st-torch": ["safetensors.torch"],
               "st-safe-open": ["safetensors", "torch"], "paddle-pool": ["safetensors.paddle"],
               "paddle-pool-nommap": ["safetensors.paddle"], "runai": ["runai_model_streamer"],
               "fastsafetensors": ["fastsafetensors"], "torch-mmap": ["torch"],
               "stload-py": ["stload"]}
    for m in imports.get(spec["peer"], []):
        __import__(m)
    if spec["peer"] == "torch-mmap" and not spec.get("bins"):
        list(peer_stream(spec, files))  # raises this torch's own error when it lacks mmap=True
    dests = {}
    buf = None
    if mode == "prealloc":
        for name, n in sizes.items():
            d = np.empty(n, dtype=np.uint8)
            d.fill(0)
            dests[name] = d
    elif mode == "stream":
        buf = np.empty(max(sizes.values()), dtype=np.uint8)
        buf.fill(0)
    hashes = {}
    seen = 0
    total = 0
    wait_for_go()
    start = time.perf_counter()
    if spec["peer"] == "stload-py" and mode in ("prealloc", "hash"):
        import stload
        if mode == "hash":
            for name, n in sizes.items():
                dests[name] = np.empty(n, dtype=np.uint8)
        stload.load_into(spec["path"], dests, None)
        seen, total = len(dests), sum(d.nbytes for d in dests.values())
        if mode == "hash":
            hashes = {k: hashlib.sha256(memoryview(v)).hexdigest() for k, v in dests.items()}
    else:
        it = stload_py_stream(spec, spec["path"]) if spec["peer"] == "stload-py" else peer_stream(spec, files)
        for name, a in it:
            n = a.nbytes
            if mode == "prealloc":
                np.copyto(dests[name], a)
            elif mode == "stream":
                np.copyto(buf[:n], a)
            else:
                hashes[name] = hashlib.sha256(memoryview(np.ascontiguousarray(a))).hexdigest()
            seen += 1
            total += n
            del a
    seconds = time.perf_counter() - start
    out = {"seconds": seconds, "bytes": total, "tensors": seen}
    if mode == "hash":
        out["hashes"] = hashes
    if seen != len(sizes):
        out["error"] = f"delivered {seen} of {len(sizes)} tensors"
    return out


# --- the parent --------------------------------------------------------------------------------


def drop_caches() -> None:
    os.sync()
    with open(DROP_CACHES, "w") as f:
        f.write("3\n")


def warm_files(files: list[str]) -> None:
    buf = bytearray(CHUNK)
    for path in files:
        with open(path, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass


def last_line(text: str) -> str:
    lines = [l for l in text.strip().splitlines() if l.strip()]
    return lines[-1].strip() if lines else ""


def run_py(args, spec: dict, cold: bool) -> dict:
    """One child of --python; drops the cache (cold) after it allocated, then starts its clock."""
    env = dict(os.environ)
    if args.stload_pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(
            [os.path.abspath(args.stload_pythonpath)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    start = time.monotonic()
    p = subprocess.Popen([args.python, os.path.abspath(__file__), "--child", json.dumps(spec)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=env)
    result = None
    line = p.stdout.readline()
    while line:
        if line.startswith("READY"):
            if cold:
                drop_caches()
            p.stdin.write("GO\n")
            p.stdin.flush()
        elif line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
        line = p.stdout.readline()
    err = p.stderr.read()
    p.wait()
    if result is None:
        result = {"error": f"exit status {p.returncode}: {last_line(err) or 'no output'}"}
    result["wall_s"] = time.monotonic() - start
    return result


def run_stload(args, path: str, consumer: str, flags: list[str], cold: bool) -> dict:
    cmd = [args.stload, "load", path, "--consumer", consumer, "--json", "--no-progress"] + flags
    if cold:
        drop_caches()
    start = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        return {"error": f"exit status {p.returncode}: {last_line(p.stderr)}", "command": cmd}
    r = json.loads(p.stdout)
    return {"seconds": r["seconds"], "bytes": r["bytes"], "peak_rss_bytes": r["peak_rss_bytes"],
            "read_path": r.get("read_path"), "wall_s": time.monotonic() - start, "command": cmd}


def reference_hashes(args, path: str) -> dict[str, str]:
    p = subprocess.run([args.stload, "hash", path, "--no-progress"], capture_output=True, text=True,
                       check=True)
    out = {}
    for line in p.stdout.splitlines():
        if line.strip():
            hexd, name = line.split(None, 1)
            out[name.strip()] = hexd
    return out


# Prints the unconditional requirements of a distribution other than torch, one a line.
REQUIRES = """import importlib.metadata as m, re, sys
for r in m.requires(sys.argv[1]) or []:
    name = re.match(r"[A-Za-z0-9_.-]+", r).group(0)
    if ";" not in r and name.lower() != "torch":
        print(r.replace(" ", ""))
"""


def setup_venv(venv: str) -> None:
    """A venv that sees Debian's torch, with the peers from PyPI; one pip per package."""
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv], check=True)
    py = os.path.join(venv, "bin", "python")
    # Pin the torch the venv already sees (Debian's), so that no peer pulls another one in; a peer
    # that needs a newer torch then fails to install, and is reported with pip's reason.
    constraints = os.path.join(venv, "peers-constraints.txt")
    pins = []
    for mod in ("torch", "numpy"):
        v = subprocess.run([py, "-c", f"import {mod}; print({mod}.__version__)"], capture_output=True,
                           text=True)
        if v.returncode == 0:
            pins.append(f"{mod}=={v.stdout.strip().split('+')[0]}")
    if not any(p.startswith("torch==") for p in pins):
        print(f"warning: {sys.executable} sees no torch: run --setup with the python3 that has it "
              "(Debian's python3-torch), or the peers may pull in another torch", flush=True)
    with open(constraints, "w") as f:
        f.write("\n".join(pins) + "\n")
    status = {}
    for pkg in SETUP_PACKAGES:
        p = subprocess.run([py, "-m", "pip", "install", "-c", constraints, pkg],
                           capture_output=True, text=True)
        if p.returncode == 0:
            status[pkg] = "ok"
        else:
            # pip's reason: the "depends on" line of a conflict, else its last line. Then the
            # package alone (--no-deps) and its other requirements, so that importing and
            # running it says whether it works with this torch.
            why = [l.strip() for l in (p.stdout + p.stderr).splitlines() if " depends on " in l]
            reason = f"pip install failed: {why[0] if why else last_line(p.stderr)}"
            if not why and "conflicting dependencies" not in p.stderr:
                status[pkg] = reason
                print(f"{pkg}: {status[pkg]}", flush=True)
                continue
            q = subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", pkg],
                               capture_output=True, text=True)
            if q.returncode != 0:
                status[pkg] = f"{reason}; --no-deps: {last_line(q.stderr)}"
            else:
                req = subprocess.run([py, "-c", REQUIRES, pkg], capture_output=True, text=True)
                others = [r for r in req.stdout.split() if r]
                if others:
                    subprocess.run([py, "-m", "pip", "install", "-q", "-c", constraints] + others,
                                   capture_output=True, text=True)
                status[pkg] = f"ok (--no-deps, without the torch it asks for; {reason})"
        print(f"{pkg}: {status[pkg]}", flush=True)
    with open(os.path.join(venv, "peers-setup.json"), "w") as f:
        json.dump({"constraints": pins, "packages": status}, f, indent=2)


def fmt_s(x):
    return f"{x:.3f}" if x is not None else "-"


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child_main(sys.argv[2])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="*", help="a .safetensors file or a directory of shards")
    ap.add_argument("--setup", metavar="VENV", help="create VENV and pip-install the peers into it")
    ap.add_argument("--python", help="the interpreter that runs the peers (default: VENV/bin/python "
                    "after --setup, else this one)")
    ap.add_argument("--stload", default="stload", help="the stload CLI")
    ap.add_argument("--stload-pythonpath", help="put this folder (the built Python package) on "
                    "the children's PYTHONPATH")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--caches", default="warm,cold")
    ap.add_argument("--consumers", default="prealloc,stream")
    ap.add_argument("--loaders", help="comma-separated names (default: all; --list-loaders)")
    ap.add_argument("--list-loaders", action="store_true")
    ap.add_argument("--no-sweep", action="store_true", help="N=8 for paddle, C=8 for runai")
    ap.add_argument("--prefault", type=float, default=0, metavar="GiB",
                    help="touch this much anonymous memory once first (VMs: see the code)")
    ap.add_argument("--json", help="write every sample, the checks and the medians here")
    ap.add_argument("--markdown", help="also write the tables here")
    args = ap.parse_args()
    if args.list_loaders:
        print("\n".join(list(LOADERS) + list(LIMITS)))
        return
    if args.setup:
        setup_venv(args.setup)
        if not args.python:
            args.python = os.path.join(args.setup, "bin", "python")
        if not args.checkpoints:
            return
    if not args.checkpoints:
        ap.error("give a checkpoint (or --setup VENV)")
    args.python = args.python or sys.executable
    caches = args.caches.split(",")
    consumers = args.consumers.split(",")
    if "cold" in caches and os.geteuid() != 0:
        sys.exit("cold runs drop the page cache: run as root, or --caches warm")
    all_names = args.loaders.split(",") if args.loaders else list(LOADERS)
    unknown = [n for n in all_names if n not in LOADERS]
    if unknown:
        ap.error(f"unknown loaders {unknown}: see --list-loaders")
    setup_status = {}
    venv_cfg = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(args.python))),
                            "peers-setup.json")
    if os.path.exists(venv_cfg):
        with open(venv_cfg) as f:
            setup_status = json.load(f)["packages"]
    needs = {"st-numpy": "safetensors", "st-torch": "safetensors", "st-safe-open": "safetensors",
             "paddle-pool": "paddlepaddle", "paddle-pool-nommap": "paddlepaddle",
             "runai": "runai-model-streamer", "fastsafetensors": "fastsafetensors"}
    t_begin = time.monotonic()
    if args.prefault:
        # On a VM the first touch of guest memory the host has not backed yet is slow (here
        # 0.3 GB/s instead of 3); touching it once makes every later allocation alike.
        start = time.monotonic()
        chunks = []
        ones = b"\1" * CHUNK
        for _ in range(int(args.prefault * 64)):
            m = mmap.mmap(-1, CHUNK)
            m.write(ones)
            chunks.append(m)
        for m in chunks:
            m.close()
        print(f"prefaulted {args.prefault} GiB in {time.monotonic() - start:.1f} s", flush=True)
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "argv": sys.argv, "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
              "python": args.python, "setup": setup_status, "checkpoints": []}
    md = []

    for path in args.checkpoints:
        names = list(all_names)
        files = shard_files(path)
        sizes = read_layout(files)
        total = sum(sizes.values())
        layout = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
        json.dump(sizes, layout)
        layout.close()
        ck = {"path": path, "files": len(files), "tensors": len(sizes), "bytes": total,
              "skipped": {}, "wrong": {}, "sweep": {}, "samples": {}, "medians": {}}
        report["checkpoints"].append(ck)
        print(f"# {path}: {len(files)} files, {len(sizes)} tensors, {total / 2**30:.2f} GiB", flush=True)

        def spec_of(name, consumer, **extra):
            s = dict(LOADERS[name][1]) if name in LOADERS else dict(LIMITS[name])
            s.update(path=path, layout=layout.name, consumer=consumer, **extra)
            return s

        # 1. The sweeps (warm, stream, once): paddle's N and runai's concurrency.
        best = {"paddle-pool": 8, "runai": 8}
        warm_files(files)
        for peer, key, label in (("paddle-pool", "workers", "paddle pool load_file N=best"),
                                 ("runai", "concurrency", "runai streamer C=best")):
            if label not in names or args.no_sweep:
                continue
            if not setup_status.get(needs[peer], "ok").startswith("ok"):
                continue
            results = {}
            for v in SWEEP:
                s = spec_of(label, "stream")
                s[key] = v
                if peer == "runai":
                    s["env"] = {"RUNAI_STREAMER_CONCURRENCY": str(v)}
                r = run_py(args, s, cold=False)
                results[v] = r.get("seconds") if "error" not in r else r["error"]
                print(f"  sweep {peer} {key}={v}: {results[v]}", flush=True)
            ck["sweep"][peer] = results
            timed = {v: t for v, t in results.items() if isinstance(t, float)}
            if timed:
                best[peer] = min(timed, key=timed.get)
        ck["sweep_best"] = best
        if best["paddle-pool"] == 8 and "paddle pool load_file N=8" in names:
            names = [n for n in names if n != "paddle pool load_file N=best"]

        def resolve(name, consumer):
            s = spec_of(name, consumer)
            if s.get("workers") == "best":
                s["workers"] = best["paddle-pool"]
            if s.get("concurrency") == "best":
                s["concurrency"] = best["runai"]
                s["env"] = {"RUNAI_STREAMER_CONCURRENCY": str(best["runai"])}
            return s

        labels = {}
        for name in names:
            how = "(no sweep)" if args.no_sweep else f"(fastest of {SWEEP})"
            if name == "paddle pool load_file N=best":
                labels[name] = f"paddle pool load_file N={best['paddle-pool']} {how}"
            elif name == "runai streamer C=best":
                labels[name] = f"runai streamer C={best['runai']} {how}"
            else:
                labels[name] = name
        ck["labels"] = labels

        # 2. The bytes, once, untimed; a skip or a mismatch leaves the loader out of the rounds.
        ref = reference_hashes(args, path)
        live = []
        for name in names:
            kind, _ = LOADERS[name]
            if kind == "stload":
                live.append(name)  # `stload hash` is the reference
                continue
            peer = LOADERS[name][1]["peer"]
            pkg = needs.get(peer)
            if pkg and not setup_status.get(pkg, "ok").startswith("ok"):
                ck["skipped"][name] = setup_status[pkg]
                print(f"  skip {name}: {setup_status[pkg]}", flush=True)
                continue
            r = run_py(args, resolve(name, "hash"), cold=False)
            if "error" in r:
                ck["skipped"][name] = r["error"]
                print(f"  skip {name}: {r['error']}", flush=True)
                continue
            got = r["hashes"]
            bad = sorted(k for k in ref if got.get(k) != ref[k]) + sorted(set(got) - set(ref))
            if bad:
                ck["wrong"][name] = f"{len(bad)} of {len(ref)} tensors differ (first: {bad[0]})"
                print(f"  WRONG {name}: {ck['wrong'][name]}", flush=True)
                continue
            print(f"  bytes ok: {name}", flush=True)
            live.append(name)

        # 3. The timed rounds: every (loader, consumer) once per round, rotated, plus the limits.
        for cache in caches:
            cold = cache == "cold"
            limits = [n for n in LIMITS if cold or not LIMITS[n]["direct"]]
            cells = [(n, c) for n in live for c in consumers] + [(n, "-") for n in limits]
            for rep in range(args.repeats):
                order = cells[rep % len(cells):] + cells[:rep % len(cells)]
                if not cold:
                    warm_files(files)
                for name, consumer in order:
                    key = f"{cache}|{consumer}|{name}"
                    if name in LIMITS:
                        r = run_py(args, spec_of(name, consumer), cold)
                    elif LOADERS[name][0] == "stload":
                        r = run_stload(args, path, consumer, LOADERS[name][1], cold)
                    else:
                        r = run_py(args, resolve(name, consumer), cold)
                    ck["samples"].setdefault(key, []).append(r)
                    s = fmt_s(r.get("seconds")) if "error" not in r else r["error"]
                    print(f"  {cache} rep {rep + 1} {consumer:8} {labels.get(name, name)}: {s}", flush=True)

            # 4. The tables.
            lim = {}
            for n in limits:
                ts = [r["seconds"] for r in ck["samples"].get(f"{cache}|-|{n}", []) if "error" not in r]
                if ts:
                    lim[n] = statistics.median(ts)
            limit_name = min(lim, key=lim.get) if lim else None
            for consumer in consumers:
                med = {}
                for n in live:
                    ts = [r["seconds"] for r in ck["samples"].get(f"{cache}|{consumer}|{n}", [])
                          if "error" not in r]
                    if ts:
                        med[n] = statistics.median(ts)
                st = {n: t for n, t in med.items() if LOADERS[n][0] == "stload" or n.startswith("stload")}
                st_best = min(st.values()) if st else None
                peers = {n: t for n, t in med.items() if n not in st}
                ck["medians"][f"{cache}|{consumer}"] = {
                    "seconds": med, "limits": lim, "limit": limit_name, "stload_best_s": st_best,
                    "fastest_peer": min(peers, key=peers.get) if peers else None}
                title = (f"### {os.path.basename(path.rstrip('/'))}, {cache}, {consumer} "
                         f"({total / 1e9:.2f} GB, {len(sizes)} tensors, {len(files)} files)")
                rows = [title, "",
                        "| loader | seconds (median) | GB/s | % of limit | peer s / stload-best s | peak RSS GiB |",
                        "|---|---:|---:|---:|---:|---:|"]
                for n, t in sorted(med.items(), key=lambda kv: kv[1]):
                    rss = max(r.get("peak_rss_bytes", 0) for r in ck["samples"][f"{cache}|{consumer}|{n}"])
                    pct = f"{100 * lim[limit_name] / t:.0f}%" if limit_name else "-"
                    ratio = f"{t / st_best:.2f}" if st_best else "-"
                    rows.append(f"| {labels[n]} | {t:.3f} | {total / t / 1e9:.2f} | {pct} | {ratio} | "
                                f"{rss / 2**30:.2f} |")
                for n, t in lim.items():
                    rows.append(f"| *{n}* | {t:.3f} | {total / t / 1e9:.2f} | "
                                f"{'(the limit)' if n == limit_name else f'{100 * lim[limit_name] / t:.0f}%'} | | |")
                for n in names:
                    if n in ck["skipped"]:
                        rows.append(f"| {labels[n]} | skipped: {ck['skipped'][n]} | | | | |")
                    elif n in ck["wrong"]:
                        rows.append(f"| {labels[n]} | wrong bytes: {ck['wrong'][n]} | | | | |")
                    elif n not in med:
                        errs = [r["error"] for r in ck["samples"].get(f"{cache}|{consumer}|{n}", [])
                                if "error" in r]
                        rows.append(f"| {labels[n]} | failed: {errs[0] if errs else 'not run'} | | | | |")
                rows.append("")
                print("\n".join(rows), flush=True)
                md += rows
        for peer, res in ck["sweep"].items():
            line = f"Sweep (warm, stream, once) {peer}: " + ", ".join(
                f"{v}: {fmt_s(t) if isinstance(t, float) else t}" for v, t in res.items()) + \
                f"; fastest: {best[peer]}"
            md += [line, ""]
            print(line, flush=True)
        os.unlink(layout.name)
    report["runtime_s"] = time.monotonic() - t_begin
    print(f"runtime {report['runtime_s']:.0f} s", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
