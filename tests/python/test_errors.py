"""Errors: the exception classes, messages that name the file, config and thread-count checks."""

from __future__ import annotations

import errno
import json
import os
import warnings

import numpy
import pytest

import stload
from st_writer import write_raw, write_safetensors


def good_file(path) -> str:
    data = numpy.arange(4096, dtype="<f4").tobytes()
    return write_safetensors(path, {"a": ("F32", [4096], data), "b": ("F32", [4096], data)})


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(stload.NotFoundError) as caught:
        stload.get_weight_iterator(tmp_path / "nope.safetensors")
    e = caught.value
    assert isinstance(e, FileNotFoundError) and isinstance(e, stload.Error)
    assert e.code == "not found"
    assert e.errno == errno.ENOENT  # as FileNotFoundError's own
    assert e.file_name == "nope.safetensors"
    assert str(e).startswith("nope.safetensors: ")


def test_corrupt_header_is_a_value_error_naming_file_and_tensor(tmp_path):
    path = write_raw(tmp_path / "bad.safetensors",
                     {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 12]}}, bytes(12))
    with pytest.raises(stload.CorruptFileError) as caught:
        stload.get_weight_iterator(path)
    e = caught.value
    assert isinstance(e, ValueError) and isinstance(e, stload.Error)
    assert e.code == "corrupt"
    assert e.tensor == "w"
    assert e.path == path
    assert str(e).startswith("bad.safetensors: ")


def test_not_a_safetensors_file(tmp_path):
    path = tmp_path / "noise.safetensors"
    path.write_bytes(os.urandom(1000))
    with pytest.raises(stload.CorruptFileError, match="^noise.safetensors: "):
        stload.load_file(path)


@pytest.mark.parametrize("api", ["safetensors_weights_iterator",
                                 "multi_thread_safetensors_weights_iterator"])
def test_a_bad_file_in_a_list_fails_the_call_and_is_named(tmp_path, api):
    files = [good_file(tmp_path / "one.safetensors"),
             write_raw(tmp_path / "two.safetensors", {"x": {"dtype": "F99", "shape": [1],
                                                             "data_offsets": [0, 4]}}, bytes(4))]
    with pytest.raises(stload.CorruptFileError, match="^two.safetensors: "):
        getattr(stload, api)(files)


@pytest.mark.parametrize("disable_mmap", [True, False])
def test_a_file_truncated_while_loading_raises_naming_it(tmp_path, disable_mmap):
    path = good_file(tmp_path / "cut.safetensors")
    it = stload.get_weight_iterator(path, {"disable_mmap": disable_mmap, "chunk_bytes": 4096,
                                           "memory_limit": 4096})
    os.truncate(path, os.path.getsize(path) - 4096)  # the validated header promises more
    with pytest.raises(stload.Error) as caught:
        for _ in it:
            pass
    assert caught.value.file_name == "cut.safetensors"
    assert str(caught.value).startswith("cut.safetensors: ")
    with pytest.raises(StopIteration):  # finished after the error, like a generator
        next(it)


def test_io_error_is_an_os_error_with_errno(tmp_path):
    (tmp_path / "plain").write_bytes(b"")
    path = tmp_path / "plain" / "x.safetensors"  # stat fails with ENOTDIR
    with pytest.raises(stload.IoError) as caught:
        stload.get_weight_iterator(path)
    e = caught.value
    assert isinstance(e, OSError) and isinstance(e, stload.Error)
    assert e.code == "io error"
    assert e.errno == errno.ENOTDIR
    assert e.filename == e.path == str(path)
    assert e.file_name == "x.safetensors"
    assert str(e).startswith("x.safetensors: ")


def test_error_classes_map_codes():
    from stload._errors import _from_status
    e = _from_status("io error", "x.safetensors: pread: Input/output error (at byte 8)",
                     "pread: Input/output error", "/d/x.safetensors", 8, None, errno.EIO)
    assert type(e) is stload.IoError and isinstance(e, OSError)
    assert (e.errno, e.offset, e.file_name) == (errno.EIO, 8, "x.safetensors")
    assert str(e) == "x.safetensors: pread: Input/output error (at byte 8)"
    assert type(_from_status("cancelled", "m", "m", None, None, None, None)) is stload.Error
    e = _from_status("resource exhausted", "cannot start a reader thread",
                     "cannot start a reader thread", None, None, None, None)
    assert type(e) is stload.ResourceExhaustedError and isinstance(e, MemoryError)
    e = _from_status("not found", "m: no such tensor", "no such tensor", "/d/m", None, "t", None)
    assert type(e) is stload.NotFoundError and e.errno == errno.ENOENT
    e = _from_status("not found", "m: open: Permission denied", "open", "/d/m", None, None,
                     errno.EACCES)
    assert e.errno == errno.EACCES  # a system call's errno is kept


@pytest.mark.parametrize("config, key", [
    ({"num_threads": 0}, "num_threads"),
    ({"num_threads": -2}, "num_threads"),
    ({"num_threads": "8"}, "num_threads"),
    ({"num_threads": 2.5}, "num_threads"),
    ({"num_threads": True}, "num_threads"),
    ({"enable_multithread_load": 1}, "enable_multithread_load"),
    ({"disable_mmap": "no"}, "disable_mmap"),
    ({"memory_limit": "lots"}, "memory_limit"),
    ({"memory_limit": 0}, "memory_limit"),
    ({"chunk_bytes": 100}, "chunk_bytes"),
    ({"uring_depth": 0}, "uring_depth"),
    ({"order": "random"}, "order"),
    ({"threads": 8}, "threads"),
])
def test_bad_config_keys_are_named(tmp_path, config, key):
    path = good_file(tmp_path / "m.safetensors")
    with pytest.raises(stload.InvalidArgumentError, match=f"'{key}'") as caught:
        stload.get_weight_iterator(path, config)
    assert isinstance(caught.value, ValueError)


def test_load_config_attributes_are_validated_when_set(tmp_path):
    # As LoadConfig(num_threads=0) is refused, so is setting it: the config stays valid.
    path = good_file(tmp_path / "m.safetensors")
    config = stload.LoadConfig(enable_multithread_load=True)
    with pytest.raises(stload.InvalidArgumentError, match="'num_threads'"):
        config.num_threads = 0
    assert config.num_threads == 8
    config.validate()
    assert len(list(stload.get_weight_iterator(path, config))) == 2
    with pytest.raises(stload.InvalidArgumentError, match="order"):
        config.order = "sideways"
    with pytest.raises(stload.InvalidArgumentError, match="memory_limit"):
        config.memory_limit = "1 lot"


@pytest.mark.parametrize("max_workers", [0, -1, 2.5, True, "8", None])
def test_max_workers_must_be_a_positive_integer(tmp_path, max_workers):
    path = good_file(tmp_path / "m.safetensors")
    with pytest.raises(stload.InvalidArgumentError, match="max_workers"):
        stload.multi_thread_safetensors_weights_iterator([path], max_workers=max_workers)


def test_max_workers_accepts_numpy_integers(tmp_path):
    path = good_file(tmp_path / "m.safetensors")
    it = stload.multi_thread_safetensors_weights_iterator([path], max_workers=numpy.int64(2))
    assert len(list(it)) == 2


def test_disable_mmap_must_be_a_bool(tmp_path):
    path = good_file(tmp_path / "m.safetensors")
    with pytest.raises(stload.InvalidArgumentError, match="disable_mmap"):
        stload.multi_thread_safetensors_weights_iterator([path], disable_mmap="yes")


def test_load_config_of_a_wrong_type_is_a_type_error(tmp_path):
    path = good_file(tmp_path / "m.safetensors")
    with pytest.raises(TypeError):
        stload.get_weight_iterator(path, ["num_threads", 8])


def test_unserializable_config_value(tmp_path):
    path = good_file(tmp_path / "m.safetensors")
    with pytest.raises(stload.InvalidArgumentError):
        stload.get_weight_iterator(path, {"num_threads": object()})


def test_checkpoint_warnings_are_runtime_warnings(tmp_path):
    good_file(tmp_path / "model-00001-of-00001.safetensors")
    index = {"metadata": {"total_size": 1},
             "weight_map": {"a": "model-00001-of-00001.safetensors",
                            "b": "model-00001-of-00001.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.warns(RuntimeWarning, match="total_size"):
        it = stload.get_weight_iterator(tmp_path)
    assert len(list(it)) == 2


def test_numpy_integers_are_accepted_in_the_config(tmp_path):
    path = good_file(tmp_path / "m.safetensors")
    config = {"enable_multithread_load": True, "num_threads": numpy.int64(2),
              "uring_depth": numpy.uint16(8), "chunk_bytes": numpy.int32(4096)}
    it = stload.get_weight_iterator(path, config)
    assert len(list(it)) == 2
    assert it.stats["threads"] == 2
    c = stload.LoadConfig(num_threads=numpy.int64(4), memory_limit=numpy.uint64(1 << 20))
    assert (c.num_threads, c.memory_limit) == (4, 1 << 20)
    c.num_threads = numpy.int8(3)
    assert c.num_threads == 3
    with pytest.raises(stload.InvalidArgumentError, match="num_threads"):
        stload.LoadConfig(num_threads=numpy.float64(4))


# --- Warnings turned into exceptions (warnings.simplefilter("error")). ---

def _fallback_warning_on_next(it):
    """Calls next(it) with every new file descriptor refused (RLIMIT_NOFILE at the lowest free
    one), so that io_uring cannot be set up and the loader falls back to pread with a warning;
    warnings are errors meanwhile. Returns the exception next() raised."""
    import resource
    probe = os.open("/dev/null", os.O_RDONLY)
    os.close(probe)  # the lowest free descriptor: a limit there refuses any new one
    old = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (probe, old[1]))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(RuntimeWarning, match="reading with plain system calls") as caught:
                next(it)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, old)
    return caught.value


def test_a_warning_turned_into_an_error_loses_no_weight(tmp_path):
    path = good_file(tmp_path / "m.safetensors")
    it = stload.get_weight_iterator(path, {"io_uring": True, "disable_mmap": True})
    _fallback_warning_on_next(it)
    # The caller caught the warning and goes on: the first weight is still there.
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and the warning is not raised again
        names = [name for name, _ in it]
    assert names == ["a", "b"]
    assert it.stats["io_uring"] is False
    assert len(it.stats["warnings"]) == 1


# --- Shapes Python cannot describe. ---

def huge_file(tmp_path, dtype: str, shape: list[int]) -> str:
    """'a' (F32), then 'huge' of `shape` and 0 bytes, then 'z' (F32)."""
    return write_raw(tmp_path / f"huge_{dtype}.safetensors", {
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "huge": {"dtype": dtype, "shape": shape, "data_offsets": [8, 8]},
        "z": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]},
    }, bytes(12))


@pytest.mark.parametrize("dtype", ["F32", "BF16", "F4"])
@pytest.mark.parametrize("shape", [[0, 2**63 + 5], [2**64 - 1, 0], [2**62, 0, 4],
                                   [2**60 - 1, 2**63 - 1, 0]],
                         ids=["past-int64", "uint64-max", "product-past-int64", "product-2^128"])
def test_an_empty_tensor_with_huge_dimensions_is_a_corrupt_file_error(tmp_path, dtype, shape):
    path = huge_file(tmp_path, dtype, shape)
    try:
        it = stload.get_weight_iterator(path)
    except stload.CorruptFileError as e:  # a parser that refuses the shape up front: fine too
        assert e.tensor == "huge"
        return
    names = []
    with pytest.raises(stload.CorruptFileError) as caught:
        for name, _ in it:
            names.append(name)
    e = caught.value
    assert names == ["a"]
    assert (e.code, e.tensor, e.path) == ("corrupt", "huge", path)
    assert str(e).startswith(f"huge_{dtype}.safetensors: tensor 'huge': ")
    with pytest.raises(StopIteration):  # finished after the error, like a generator
        next(it)


@pytest.mark.parametrize("dtype", ["F32", "BF16"])
def test_an_empty_tensor_with_large_dimensions_python_can_describe(tmp_path, dtype):
    path = huge_file(tmp_path, dtype, [0, 1 << 40])
    weights = stload.load_file(path)
    assert list(weights) == ["a", "huge", "z"]
    huge = weights["huge"]
    assert huge.shape == (0, 1 << 40)
    if dtype == "BF16":
        assert huge.numpy().shape == (0, 1 << 40)
        huge.__dlpack__(max_version=(1, 0))


def test_more_dimensions_than_numpy_has_is_an_error_naming_the_tensor(tmp_path):
    # numpy arrays have at most 32 dimensions (64 in numpy 2).
    path = write_raw(tmp_path / "deep.safetensors", {
        "deep": {"dtype": "F32", "shape": [1] * 65, "data_offsets": [0, 4]},
        "z": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},
    }, bytes(8))
    it = stload.get_weight_iterator(path)
    with pytest.raises(stload.Error) as caught:
        next(it)
    e = caught.value
    assert (e.code, e.tensor, e.path) == ("unsupported", "deep", path)
    assert type(e) is stload.UnsupportedError and isinstance(e, ValueError)
    assert str(e).startswith("deep.safetensors: tensor 'deep': numpy cannot hold this weight")
    with pytest.raises(StopIteration):
        next(it)


# --- Issue 16, item 15: integers out of range, and values JSON cannot carry, name the key. ---

@pytest.mark.parametrize("key, value, allowed", [
    ("memory_limit", 2**64, "from 1 to 18446744073709551615"),
    ("memory_limit", 2**100, "from 1 to 18446744073709551615"),
    ("memory_limit", -2**64, "non-negative integer or a size string"),
    ("memory_limit", -1, "non-negative integer or a size string"),
    ("chunk_bytes", 2**64, "from 4096 to 1 GiB"),
    ("chunk_bytes", -2**64, "non-negative integer or a size string"),
    ("uring_depth", 2**64, "from 1 to 4096"),
    ("uring_depth", -2**64, "from 1 to 4096"),
    ("num_threads", -2**64, ">= 1, not -18446744073709551616"),
    ("enable_multithread_load", 2**64, "true or false"),
    ("disable_mmap", -2**64, "true or false"),
    ("direct_io", 2**70, "true or false"),
    ("io_uring", 2**64, "true or false"),
    ("order", 2**64, "one of"),
    ("no_such_key", 2**64, "unknown key"),
    ("memory_limit", float("nan"), "non-negative integer or a size string"),
    ("memory_limit", float("inf"), "non-negative integer or a size string"),
    ("num_threads", float("-inf"), ">= 1"),
    ("uring_depth", float("nan"), "from 1 to 4096"),
    ("enable_multithread_load", float("nan"), "true or false"),
    ("num_threads", 4.0, ">= 1"),
    ("num_threads", b"8", ">= 1"),
    ("memory_limit", b"1GiB", "non-negative integer or a size string"),
    ("memory_limit", "1\udce9GiB", "is not a size"),
    ("order", "\udce9", "one of"),
    ("direct_io", numpy.bool_(True), "true or false"),
    ("num_threads", object(), ">= 1"),
])
def test_out_of_range_and_unrepresentable_config_values_name_the_key(tmp_path, key, value,
                                                                     allowed):
    path = good_file(tmp_path / "m.safetensors")
    for make in (lambda: stload.get_weight_iterator(path, {key: value}),
                 lambda: stload.LoadConfig(**{key: value}),
                 lambda: stload.load_file(path, {key: value})):
        with pytest.raises(stload.InvalidArgumentError) as caught:
            make()
        message = str(caught.value)
        assert f"'{key}'" in message and allowed in message, message
        assert "not valid JSON" not in message and "serializable" not in message


def test_a_non_string_key_is_named(tmp_path):
    path = good_file(tmp_path / "m.safetensors")
    with pytest.raises(TypeError):  # ** refuses it, as for any function
        stload.get_weight_iterator(path, {1: 2})
    with pytest.raises(stload.InvalidArgumentError, match="unknown key"):
        stload.LoadConfig(**{"\udce9": 1})


def test_a_huge_thread_count_is_clamped_as_from_json_clamps_it(tmp_path):
    path = good_file(tmp_path / "m.safetensors")
    # Not an error: more threads than there is work are not started (LoadConfig::from_json
    # clamps any count to 2**20; 2**64 is no different from 2**62).
    for n in (2**62, 2**64, 2**200):
        assert stload.LoadConfig(num_threads=n).num_threads == 1 << 20
        assert stload.LoadConfig(num_threads=n) == stload.LoadConfig(num_threads=1 << 20)
    it = stload.multi_thread_safetensors_weights_iterator([path], max_workers=2**64)
    assert len(list(it)) == 2
    assert it.stats["threads"] <= 2
    it = stload.get_weight_iterator(path, {"enable_multithread_load": True, "num_threads": 2**64})
    assert len(list(it)) == 2


def test_the_largest_memory_limit_is_accepted(tmp_path):
    path = good_file(tmp_path / "m.safetensors")
    assert stload.LoadConfig(memory_limit=2**64 - 1).memory_limit == 2**64 - 1
    assert len(stload.load_file(path, {"memory_limit": 2**64 - 1})) == 2


@pytest.mark.parametrize("attribute, value, allowed", [
    ("memory_limit", 2**64, "from 1 to 18446744073709551615"),
    ("memory_limit", -1, "non-negative integer or a size string"),
    ("memory_limit", 0, "at least 1 byte"),
    ("memory_limit", 1.5, "non-negative integer or a size string"),
    ("chunk_bytes", 2**64, "from 4096 to 1 GiB"),
    ("chunk_bytes", -1, "non-negative integer or a size string"),
    ("chunk_bytes", 100, "from 4096 to 1 GiB"),
    ("uring_depth", 2**64, "from 1 to 4096"),
    ("uring_depth", -1, "from 1 to 4096"),
    ("uring_depth", 5000, "from 1 to 4096"),
    ("uring_depth", "8", "from 1 to 4096"),
    ("num_threads", -2**64, ">= 1"),
    ("num_threads", 0, ">= 1"),
    ("num_threads", 2.5, ">= 1"),
    ("num_threads", True, ">= 1"),
    ("num_threads", "8", ">= 1"),
    ("enable_multithread_load", 1, "true or false"),
    ("enable_multithread_load", "yes", "true or false"),
    ("disable_mmap", 0, "true or false"),
    ("direct_io", "no", "true or false"),
    ("io_uring", 2**64, "true or false"),
    ("order", 5, "one of"),
    ("order", "sideways", "one of"),
])
def test_load_config_attributes_refuse_bad_values_naming_the_key(attribute, value, allowed):
    c = stload.LoadConfig()
    before = c.to_dict()
    with pytest.raises(stload.InvalidArgumentError) as caught:
        setattr(c, attribute, value)
    message = str(caught.value)
    assert f"'{attribute}'" in message and allowed in message, message
    assert isinstance(caught.value, ValueError)
    assert c.to_dict() == before  # unchanged


def test_load_config_attributes_take_what_the_keys_take():
    c = stload.LoadConfig()
    c.num_threads = 2**64  # clamped, as LoadConfig(num_threads=2**64)
    assert c.num_threads == 1 << 20
    c.num_threads = numpy.int16(3)
    c.uring_depth = numpy.uint64(4096)
    c.memory_limit = 2**64 - 1
    c.chunk_bytes = "64KiB"
    c.enable_multithread_load = True
    c.direct_io = False
    c.io_uring = True
    c.disable_mmap = True
    assert (c.num_threads, c.uring_depth, c.memory_limit, c.chunk_bytes) == (
        3, 4096, 2**64 - 1, 65536)
    assert (c.enable_multithread_load, c.direct_io, c.io_uring, c.disable_mmap) == (
        True, False, True, True)
    assert stload.LoadConfig(**c.to_dict()) == c
    # None means unset, as in LoadConfig(key=None): the default.
    for key in ("num_threads", "uring_depth", "chunk_bytes", "enable_multithread_load",
                "direct_io", "io_uring", "disable_mmap", "memory_limit", "order"):
        setattr(c, key, None)
    assert c == stload.LoadConfig()
