"""Byte parity with `stload hash`: every loading mode yields exactly the bytes of every tensor."""

from __future__ import annotations

import warnings

import pytest

import stload
from helpers import cli_hashes, python_hashes, shard_files

# Every read path, thread count, order, and the chunking and backpressure limits.
CONFIGS = {
    "default": None,
    "one-thread-pread": {"disable_mmap": True},
    "one-thread-mmap": {"disable_mmap": False},
    "threads-pread": {"enable_multithread_load": True, "num_threads": 4, "disable_mmap": True},
    "threads-mmap": {"enable_multithread_load": True, "num_threads": 4, "disable_mmap": False},
    "direct-io": {"enable_multithread_load": True, "num_threads": 2, "direct_io": True},
    "io-uring": {"enable_multithread_load": True, "num_threads": 2, "io_uring": True},
    "direct-io-uring": {"enable_multithread_load": True, "num_threads": 2, "direct_io": True,
                        "io_uring": True},
    "order-index": {"enable_multithread_load": True, "order": "index"},
    "order-file": {"enable_multithread_load": True, "order": "file"},
    "order-any": {"enable_multithread_load": True, "order": "any"},
    "small-chunks-tight-memory": {"enable_multithread_load": True, "num_threads": 3,
                                  "chunk_bytes": 4096, "memory_limit": "64KiB"},
}

CHECKPOINTS = ["llama", "deepseek", "many_small"]


@pytest.fixture(params=CHECKPOINTS)
def checkpoint(request):
    return request.getfixturevalue(request.param)


@pytest.fixture
def expected(cli, checkpoint):
    return cli_hashes(cli, checkpoint)


def expected_read_path(config) -> tuple[str, bool]:
    """(read_path, io_uring) that `config` asks for."""
    config = config or {}
    if config.get("direct_io"):
        path = "direct"
    else:
        path = "mmap" if config.get("disable_mmap") is False else "pread"
    return path, bool(config.get("io_uring")) and path != "mmap"


@pytest.mark.parametrize("mode", CONFIGS)
def test_get_weight_iterator(checkpoint, expected, mode):
    with warnings.catch_warnings(record=True) as caught:
        # io_uring or O_DIRECT may be unavailable here; stload then falls back with a warning.
        warnings.simplefilter("always", RuntimeWarning)
        it = stload.get_weight_iterator(checkpoint, CONFIGS[mode])
        assert python_hashes(it) == expected
    fallbacks = [str(w.message) for w in caught if "instead" in str(w.message)]
    path, uring = expected_read_path(CONFIGS[mode])
    if not fallbacks:  # the mode asked for is the one tested
        assert (it.stats["read_path"], it.stats["io_uring"]) == (path, uring)
    else:
        assert it.stats["warnings"] == [m.removeprefix("stload: ") for m in fallbacks]
        assert (it.stats["read_path"], it.stats["io_uring"]) != (path, uring)


def test_safetensors_weights_iterator(checkpoint, expected):
    assert python_hashes(stload.safetensors_weights_iterator(shard_files(checkpoint))) == expected


@pytest.mark.parametrize("disable_mmap", [False, True])
@pytest.mark.parametrize("max_workers", [1, 3, 8])
def test_multi_thread_iterator(checkpoint, expected, max_workers, disable_mmap):
    it = stload.multi_thread_safetensors_weights_iterator(
        shard_files(checkpoint), max_workers=max_workers, disable_mmap=disable_mmap)
    assert python_hashes(it) == expected


def test_load_file(checkpoint, expected):
    assert python_hashes(stload.load_file(checkpoint).items()) == expected


def test_weights_outlive_the_iterator(checkpoint, expected):
    # Keep every array, drop the iterator (its Loaders and threads), then hash.
    it = stload.multi_thread_safetensors_weights_iterator(shard_files(checkpoint), 4, True)
    kept = list(it)
    del it
    assert python_hashes(kept) == expected
