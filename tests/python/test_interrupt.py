"""Waits that can be interrupted (issue 16, item 3).

While next() waits for a large block, Ctrl-C (SIGINT) raises KeyboardInterrupt within a poll
interval, and close() from another thread returns at once and ends that next() with
StopIteration, instead of both waiting for the whole block.

Slow storage without a huge file: each scenario runs in a child interpreter whose pread() and
pread64() sleep SLOW_PREAD_MS before every read of 64 KiB or more (an LD_PRELOAD shim compiled
here; the test is skipped without a C compiler). One tensor of CHUNKS chunks of 64 KiB read by one
thread then takes CHUNKS * SLOW_PREAD_MS = 6 s, which the assertions stay far below.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from st_writer import write_safetensors

CHUNK = 64 * 1024
CHUNKS = 200
SLOW_PREAD_MS = 30  # the whole block: 6 s
WITHIN_S = 2.0      # generous: a poll interval (20 ms), one chunk (30 ms), a join, start-up

SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/types.h>
#include <time.h>

static void slow(size_t count) {
  static long ms = -1;
  if (ms < 0) {
    const char* v = getenv("SLOW_PREAD_MS");
    ms = v ? atol(v) : 0;
  }
  if (ms > 0 && count >= 65536) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
  }
}

ssize_t pread(int fd, void* buf, size_t count, off_t offset) {
  static ssize_t (*real)(int, void*, size_t, off_t);
  if (!real) real = (ssize_t (*)(int, void*, size_t, off_t))dlsym(RTLD_NEXT, "pread");
  slow(count);
  return real(fd, buf, count, offset);
}

ssize_t pread64(int fd, void* buf, size_t count, off_t offset) {
  static ssize_t (*real)(int, void*, size_t, off_t);
  if (!real) real = (ssize_t (*)(int, void*, size_t, off_t))dlsym(RTLD_NEXT, "pread64");
  slow(count);
  return real(fd, buf, count, offset);
}
"""


@pytest.fixture(scope="module")
def slow_pread(tmp_path_factory) -> str:
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler for the slow-pread shim")
    d = tmp_path_factory.mktemp("shim")
    (d / "slow_pread.c").write_text(SHIM)
    so = d / "slow_pread.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(so), str(d / "slow_pread.c"), "-ldl"],
                   check=True, capture_output=True)
    return str(so)


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("big") / "big.safetensors"
    data = bytes(range(256)) * (CHUNK * CHUNKS // 256)
    return write_safetensors(path, {"big": ("U8", [len(data)], data)})


def run_slowly(shim: str, script: str) -> dict:
    env = dict(os.environ, LD_PRELOAD=shim, SLOW_PREAD_MS=str(SLOW_PREAD_MS))
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition("=")
        result[key] = value
    return result


CONFIG = f'{{"disable_mmap": True, "chunk_bytes": {CHUNK}}}'


def test_sigint_interrupts_a_next_waiting_for_a_large_block(slow_pread, big):
    out = run_slowly(slow_pread, f"""
        import os, signal, threading, time
        import stload
        it = stload.get_weight_iterator({big!r}, {CONFIG})
        start = time.monotonic()
        threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        try:
            next(it)
            print("outcome=weight")
        except KeyboardInterrupt:
            print("outcome=KeyboardInterrupt")
        print(f"elapsed={{time.monotonic() - start}}")
        # Interrupted, the iterator is finished: the load was cancelled.
        print(f"after={{next(it, 'end')}}")
    """)
    assert out["outcome"] == "KeyboardInterrupt"
    assert float(out["elapsed"]) < WITHIN_S, out
    assert out["after"] == "end"


def test_close_from_another_thread_does_not_wait_for_the_block(slow_pread, big):
    out = run_slowly(slow_pread, f"""
        import threading, time
        import stload
        it = stload.get_weight_iterator({big!r}, {CONFIG})
        took = []
        def closer():
            time.sleep(0.3)
            begin = time.monotonic()
            it.close()
            took.append(time.monotonic() - begin)
        thread = threading.Thread(target=closer)
        start = time.monotonic()
        thread.start()
        try:
            next(it)
            print("outcome=weight")
        except StopIteration:
            print("outcome=StopIteration")
        print(f"elapsed={{time.monotonic() - start}}")
        thread.join()
        print(f"close={{took[0]}}")
    """)
    assert out["outcome"] == "StopIteration"
    assert float(out["elapsed"]) < WITHIN_S, out
    assert float(out["close"]) < WITHIN_S, out


def test_an_uninterrupted_slow_load_still_delivers(slow_pread, big):
    # The polling wait must not change what is delivered.
    out = run_slowly(slow_pread, f"""
        import hashlib
        import stload
        it = stload.get_weight_iterator({big!r}, {{"disable_mmap": True, "chunk_bytes": {CHUNK},
                                             "enable_multithread_load": True, "num_threads": 8}},
                                      framework="numpy")
        name, value = next(it)
        print(f"name={{name}}")
        print(f"sha={{hashlib.sha256(value.tobytes()).hexdigest()}}")
        print(f"after={{next(it, 'end')}}")
    """)
    data = Path(big).read_bytes()
    import hashlib
    header = int.from_bytes(data[:8], "little")
    assert out["name"] == "big"
    assert out["sha"] == hashlib.sha256(data[8 + header:]).hexdigest()
    assert out["after"] == "end"


def test_sigint_interrupts_load_into(slow_pread, big):
    # load_into waits in C++ with the GIL released; Ctrl-C must still stop it promptly.
    out = run_slowly(slow_pread, f"""
        import os, signal, threading, time
        import stload
        dst = bytearray({CHUNK * CHUNKS})
        calls = []
        start = time.monotonic()
        threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        try:
            stload.load_into({big!r}, {{"big": dst}}, {CONFIG},
                             progress=lambda done, total: calls.append(done))
            print("outcome=loaded")
        except KeyboardInterrupt:
            print("outcome=KeyboardInterrupt")
        print(f"elapsed={{time.monotonic() - start}}")
        print(f"progress_calls={{len(calls)}}")
        print(f"increasing={{calls == sorted(calls)}}")
    """)
    assert out["outcome"] == "KeyboardInterrupt"
    assert float(out["elapsed"]) < WITHIN_S, out
    assert int(out["progress_calls"]) >= 2, out  # called while the readers worked
    assert out["increasing"] == "True"
