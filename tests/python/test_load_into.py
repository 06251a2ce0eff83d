"""stload.load_into: tensors read straight into the caller's memory (issue 12, item 5)."""

from __future__ import annotations

import hashlib

import numpy
import pytest

import stload
from helpers import cli_hashes, raw_bytes
from st_writer import write_safetensors

CONFIGS = {
    "default": None,
    "one-thread": {"enable_multithread_load": False},
    "mmap": {"enable_multithread_load": True, "num_threads": 3, "disable_mmap": False},
    "direct-io": {"enable_multithread_load": True, "num_threads": 2, "direct_io": True},
    "io-uring": {"enable_multithread_load": True, "num_threads": 2, "io_uring": True},
    "small-chunks": {"enable_multithread_load": True, "num_threads": 3, "chunk_bytes": 4096},
}


def raw_destinations(checkpoint) -> dict:
    """A uint8 array of each tensor's size (raw bytes: any dtype)."""
    described = stload.inspect(checkpoint)["tensors"]
    return {t["name"]: numpy.full(t["data_offsets"][1] - t["data_offsets"][0], 0xAB, numpy.uint8)
            for t in described}


def hashes(destinations: dict) -> dict:
    return {name: hashlib.sha256(raw_bytes(v)).hexdigest() for name, v in destinations.items()}


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
@pytest.mark.parametrize("fixture", ["llama", "deepseek", "many_small"])
def test_every_read_path_reads_the_files_bytes(cli, request, fixture, config):
    checkpoint = request.getfixturevalue(fixture)
    destinations = raw_destinations(checkpoint)
    stats = stload.load_into(checkpoint, destinations, config)
    assert hashes(destinations) == cli_hashes(cli, checkpoint)
    assert stats["bytes_read"] == sum(v.nbytes for v in destinations.values())
    assert sum(s["file_bytes"] for s in stats["shards"]) >= stats["bytes_read"]


def test_typed_numpy_buffer_protocol_and_dlpack_destinations(tmp_path):
    values = numpy.arange(24, dtype=numpy.float32).reshape(2, 3, 4)
    counts = numpy.arange(10, dtype="<i2")
    path = write_safetensors(tmp_path / "m.safetensors", {
        "values": ("F32", [2, 3, 4], values.tobytes()),
        "counts": ("I16", [10], counts.tobytes()),
        "raw": ("U8", [5], b"hello"),
    })
    typed = numpy.zeros((2, 3, 4), numpy.float32)
    as_bytes = bytearray(20)
    raw = memoryview(bytearray(5))
    stload.load_into(path, {"values": typed, "counts": as_bytes, "raw": raw})
    numpy.testing.assert_array_equal(typed, values)
    assert bytes(as_bytes) == counts.tobytes()
    assert bytes(raw) == b"hello"


def test_a_subset_is_read_and_nothing_else_is_written(tmp_path):
    path = write_safetensors(tmp_path / "m.safetensors", {
        "a": ("U8", [4], b"aaaa"), "b": ("U8", [4], b"bbbb")})
    b = bytearray(b"....")
    stats = stload.load_into(path, {"b": b})
    assert bytes(b) == b"bbbb"
    assert stats["bytes_read"] == 4


@pytest.fixture
def small(tmp_path):
    return write_safetensors(tmp_path / "small.safetensors", {
        "w": ("F32", [2, 3], numpy.arange(6, dtype=numpy.float32).tobytes()),
        "h": ("BF16", [4], bytes(8)),
    })


def test_wrong_size_is_an_error_naming_the_tensor(small):
    with pytest.raises(stload.InvalidArgumentError, match="'w'.*holds 20 bytes, the tensor 24"):
        stload.load_into(small, {"w": bytearray(20)})


def test_unknown_name_is_an_error_naming_the_file(small):
    with pytest.raises(stload.InvalidArgumentError, match="small.safetensors: no tensor 'nope'"):
        stload.load_into(small, {"nope": bytearray(4)})


def test_read_only_and_non_contiguous_numpy_are_refused(small):
    ro = numpy.zeros((2, 3), numpy.float32)
    ro.flags.writeable = False
    with pytest.raises(stload.InvalidArgumentError, match="'w' is read-only"):
        stload.load_into(small, {"w": ro})
    strided = numpy.zeros((2, 6), numpy.float32)[:, ::2]
    with pytest.raises(stload.InvalidArgumentError, match="'w' is not C-contiguous"):
        stload.load_into(small, {"w": strided})
    with pytest.raises(stload.InvalidArgumentError, match="is read-only"):
        stload.load_into(small, {"w": b"x" * 24})  # bytes: buffer protocol, read-only


def test_wrong_dtype_is_a_type_error_and_uint8_takes_raw_bytes(small):
    with pytest.raises(TypeError, match="'w' is numpy float64, the tensor is F32"):
        stload.load_into(small, {"w": numpy.zeros(3, numpy.float64)})
    raw = numpy.zeros(24, numpy.uint8)
    stload.load_into(small, {"w": raw})
    numpy.testing.assert_array_equal(raw.view(numpy.float32), numpy.arange(6, dtype=numpy.float32))


def test_objects_without_memory_are_a_type_error(small):
    with pytest.raises(TypeError, match="must be a torch tensor, a numpy array"):
        stload.load_into(small, {"w": 7})
    with pytest.raises(TypeError, match="mapping"):
        stload.load_into(small, [("w", bytearray(24))])


def test_progress_is_called_and_its_exception_propagates(small):
    calls = []
    stload.load_into(small, {"w": bytearray(24), "h": bytearray(8)},
                     progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1] == (32, 32)
    assert all(done <= total for done, total in calls)

    class Stop(Exception):
        pass

    def stop(done, total):
        raise Stop

    with pytest.raises(Stop):
        stload.load_into(small, {"w": bytearray(24)}, progress=stop)


def test_use_tqdm_on_load_shows_a_bar_or_warns(small, capsys, monkeypatch):
    monkeypatch.setattr(stload._progress, "_warned_no_tqdm", False)  # once a process
    try:
        import tqdm  # noqa: F401
    except ImportError:
        with pytest.warns(RuntimeWarning, match="tqdm cannot be imported"):
            stload.load_into(small, {"w": bytearray(24)}, use_tqdm_on_load=True)
    else:
        stload.load_into(small, {"w": bytearray(24)}, use_tqdm_on_load=True)
        assert "Loading safetensors" in capsys.readouterr().err


def test_an_engines_load_config_object_is_taken(small):
    class EngineLoadConfig:  # vLLM's and FastDeploy's carry the extra config in this attribute
        model_loader_extra_config = {"enable_multithread_load": True, "num_threads": 2}

    stats = stload.load_into(small, {"w": bytearray(24)}, EngineLoadConfig())
    assert stats["threads"] >= 1
    with pytest.raises(stload.InvalidArgumentError, match="bogus"):
        stload.load_into(small, {"w": bytearray(24)}, {"bogus": 1})


class TestTorch:
    def test_parameters_every_dtype_and_bytes(self, torch, cli, llama, deepseek):
        for checkpoint in (llama, deepseek):
            described = stload.inspect(checkpoint)["tensors"]
            params = {}
            for t in described:
                dtype = getattr(torch, stload._frameworks.TORCH_DTYPE_NAMES[t["dtype"]], None)
                if dtype is None:  # FP8 in an old torch: raw bytes
                    size = t["data_offsets"][1] - t["data_offsets"][0]
                    params[t["name"]] = torch.empty(size, dtype=torch.uint8)
                else:  # what an engine allocates; requires_grad as nn.Parameter's default
                    params[t["name"]] = torch.nn.Parameter(torch.empty(t["shape"], dtype=dtype))
            stload.load_into(checkpoint, params)
            got = {n: hashlib.sha256(raw_bytes(p.detach())).hexdigest() for n, p in params.items()}
            assert got == cli_hashes(cli, checkpoint)

    def test_bad_torch_destinations(self, torch, small):
        with pytest.raises(TypeError, match="'w' is torch.float16, the tensor is F32"):
            stload.load_into(small, {"w": torch.empty(2, 3, dtype=torch.float16)})
        with pytest.raises(stload.InvalidArgumentError, match="'w' is not contiguous"):
            stload.load_into(small, {"w": torch.empty(3, 2).t()})
        with pytest.raises(stload.InvalidArgumentError, match="'w': destination holds 16 bytes"):
            stload.load_into(small, {"w": torch.empty(4)})

    def test_dlpack_destination(self, torch, small):
        class Producer:  # a framework known to stload only through __dlpack__
            def __init__(self, tensor):
                self.tensor = tensor

            def __dlpack__(self, stream=None):
                return torch.utils.dlpack.to_dlpack(self.tensor)

        w = torch.zeros(2, 3)
        stload.load_into(small, {"w": Producer(w)})
        assert w.flatten().tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
        with pytest.raises(TypeError, match="DLPack type code 0 with 32 bits, the tensor is F32"):
            stload.load_into(small, {"w": Producer(torch.zeros(6, dtype=torch.int32))})
        h = torch.ones(4, dtype=torch.bfloat16)
        stload.load_into(small, {"h": torch.utils.dlpack.to_dlpack(h)})  # a bare capsule
        assert h.float().tolist() == [0.0] * 4
