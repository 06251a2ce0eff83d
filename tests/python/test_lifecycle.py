"""Iterator lifetime: abandoning half-way, weights outliving the iterator, the GIL, threads."""

from __future__ import annotations

import gc
import hashlib
import sys
import threading
import time

import pytest

import stload
from helpers import cli_hashes, raw_bytes, shard_files, thread_count

# Many reader threads and a small read-ahead, so that an abandoned iterator has readers blocked
# on backpressure and reads in flight.
BUSY = {"enable_multithread_load": True, "num_threads": 6, "chunk_bytes": 4096,
        "memory_limit": "256KiB"}


def wait_for_thread_count(expected: int, timeout_s: float = 5.0) -> int:
    deadline = time.monotonic() + timeout_s
    while thread_count() > expected and time.monotonic() < deadline:
        time.sleep(0.01)
    return thread_count()


@pytest.mark.parametrize("how", ["close", "del", "context-manager", "break"])
def test_abandoning_half_way_stops_the_readers(cli, llama, how):
    expected = cli_hashes(cli, llama)
    before = thread_count()
    kept = []
    it = stload.get_weight_iterator(llama, BUSY)
    if how == "context-manager":
        with it:
            kept = [next(it) for _ in range(3)]
    elif how == "break":
        for pair in it:
            kept.append(pair)
            if len(kept) == 3:
                break
        del it
    else:
        kept = [next(it) for _ in range(3)]
        assert thread_count() > before  # the readers are running
        if how == "close":
            it.close()
            it.close()  # idempotent
            with pytest.raises(StopIteration):
                next(it)
        del it
    gc.collect()
    assert wait_for_thread_count(before) == before
    # What was yielded before abandoning stays valid.
    for name, value in kept:
        assert hashlib.sha256(raw_bytes(value)).hexdigest() == expected[name]


def test_abandoning_a_multi_file_iterator(llama):
    before = thread_count()
    it = stload.multi_thread_safetensors_weights_iterator(shard_files(llama), max_workers=4,
                                                          disable_mmap=True)
    next(it)
    it.close()
    assert wait_for_thread_count(before) == before


def test_readers_stop_when_the_iterator_ends(llama):
    before = thread_count()
    it = stload.multi_thread_safetensors_weights_iterator(shard_files(llama), max_workers=4)
    for _ in it:
        pass
    assert wait_for_thread_count(before) == before


def test_weights_stay_valid_after_the_iterator_is_gone(cli, llama):
    expected = cli_hashes(cli, llama)
    pairs = list(stload.get_weight_iterator(llama, BUSY))
    gc.collect()
    assert {n: hashlib.sha256(raw_bytes(v)).hexdigest() for n, v in pairs} == expected


def test_the_gil_is_released_while_reading(llama):
    """A second Python thread runs during next(), although the GIL is never handed over by force.

    With a switch interval of minutes, a thread holding the GIL keeps it until it releases it
    itself; the spinner thread can then only count while stload waits with the GIL released.
    """
    interval = sys.getswitchinterval()
    count = 0
    stop = False

    def spin():
        nonlocal count
        while not stop:
            count += 1
            time.sleep(0)  # releases the GIL; taking it back waits for the main thread

    spinner = threading.Thread(target=spin)
    sys.setswitchinterval(300)
    try:
        spinner.start()
        it = stload.get_weight_iterator(llama, {"disable_mmap": True})
        before = count
        for _ in it:
            pass
        during = count - before  # before the iterator's destructor, which releases it too
        del it
    finally:
        stop = True
        sys.setswitchinterval(interval)
        spinner.join()
    assert during > 0


def test_next_from_several_threads_yields_each_weight_once(cli, llama):
    expected = cli_hashes(cli, llama)
    it = stload.get_weight_iterator(llama, {"enable_multithread_load": True, "num_threads": 4})
    taken = [[] for _ in range(4)]  # per thread: (name, sha256); checked in this thread
    errors = []

    def take(mine):
        try:
            for name, value in it:
                mine.append((name, hashlib.sha256(raw_bytes(value)).hexdigest()))
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=take, args=(mine,)) for mine in taken]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    names = [name for mine in taken for name, _ in mine]
    assert len(names) == len(set(names)), "a weight was yielded twice"
    assert dict(pair for mine in taken for pair in mine) == expected
