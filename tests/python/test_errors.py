"""Errors: the exception classes, messages that name the file, config and thread-count checks."""

from __future__ import annotations

import errno
import json
import os

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


def test_load_config_attributes_are_validated_by_the_call(tmp_path):
    path = good_file(tmp_path / "m.safetensors")
    config = stload.LoadConfig(enable_multithread_load=True)
    config.num_threads = 0
    with pytest.raises(stload.InvalidArgumentError, match="num_threads"):
        stload.get_weight_iterator(path, config)
    with pytest.raises(stload.InvalidArgumentError, match="num_threads"):
        config.validate()
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
