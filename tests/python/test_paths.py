"""Paths, as open() takes them: str (surrogate escapes included), bytes and os.PathLike, at every
entry point; file names that are not UTF-8 come back (errors, inspect) with os.fsdecode so they
round-trip; an embedded NUL is a ValueError, never a shorter path (issue 16, items 11 and 12)."""

from __future__ import annotations

import json
import os
import pathlib
import warnings

import numpy
import pytest

import stload
from st_writer import write_raw, write_safetensors

# Not UTF-8: 0xE9 is Latin-1 "é"; os.fsdecode turns it into the surrogate escape "\udce9".
RAW_NAME = b"caf\xe9.safetensors"


def _tensors(prefix: str = "") -> dict:
    data = numpy.arange(256, dtype="<f4").tobytes()
    return {prefix + "a": ("F32", [256], data), prefix + "b": ("F32", [256], data)}


@pytest.fixture
def raw_dir(tmp_path) -> bytes:
    """A directory (bytes path) holding one valid shard whose name is not UTF-8."""
    directory = os.fsencode(tmp_path)
    write_safetensors(os.path.join(directory, RAW_NAME), _tensors())
    return directory


@pytest.fixture
def raw_file(raw_dir) -> bytes:
    return os.path.join(raw_dir, RAW_NAME)


# The three spellings open() takes for the same file.
SPELLINGS = {
    "bytes": lambda p: p,
    "str": os.fsdecode,  # surrogate escapes, as os.listdir gives
    "pathlike": lambda p: pathlib.Path(os.fsdecode(p)),
}

# Every entry point that takes a path or a list of paths; each yields (name, array) pairs or
# returns a dict.
ENTRY_POINTS = {
    "get_weight_iterator": lambda p: list(stload.get_weight_iterator(p)),
    "get_weight_iterator_config": lambda p: list(stload.get_weight_iterator(
        p, stload.LoadConfig(enable_multithread_load=True, num_threads=2))),
    "safetensors_weights_iterator": lambda p: list(stload.safetensors_weights_iterator([p])),
    "safetensors_weights_iterator_one": lambda p: list(stload.safetensors_weights_iterator(p)),
    "multi_thread": lambda p: list(stload.multi_thread_safetensors_weights_iterator([p])),
    "multi_thread_one": lambda p: list(stload.multi_thread_safetensors_weights_iterator(p)),
    "load_file": lambda p: sorted(stload.load_file(p).items()),
    "inspect": stload.inspect,
}


@pytest.mark.parametrize("spelling", SPELLINGS)
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_every_entry_point_takes_str_bytes_and_pathlike_non_utf8_names(raw_file, entry, spelling):
    result = ENTRY_POINTS[entry](SPELLINGS[spelling](raw_file))
    if entry == "inspect":
        assert [t["name"] for t in result["tensors"]] == ["a", "b"]
        assert {t["file"] for t in result["tensors"]} == {os.fsdecode(RAW_NAME)}
    else:
        assert [name for name, _ in result] == ["a", "b"]
        assert bytes(result[0][1].data) == numpy.arange(256, dtype="<f4").tobytes()


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_a_directory_with_a_non_utf8_shard_loads_and_inspect_names_it(raw_dir, spelling):
    path = SPELLINGS[spelling](raw_dir)
    assert [name for name, _ in stload.get_weight_iterator(path)] == ["a", "b"]
    info = stload.inspect(path)
    names = {t["file"] for t in info["tensors"]}
    assert names == {os.fsdecode(RAW_NAME)}
    # The name round-trips: it is what os.listdir says, and it opens the file.
    assert names <= set(os.listdir(os.fsdecode(raw_dir)))
    with open(os.path.join(os.fsdecode(raw_dir), names.pop()), "rb"):
        pass


def test_the_names_os_listdir_gives_are_accepted(raw_dir):
    directory = os.fsdecode(raw_dir)
    files = [os.path.join(directory, n) for n in os.listdir(directory)]
    assert [name for name, _ in stload.safetensors_weights_iterator(files)] == ["a", "b"]
    assert len(stload.load_file(files[0])) == 2


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_an_error_in_a_non_utf8_file_names_it_and_its_path_round_trips(raw_dir, spelling):
    bad = os.path.join(raw_dir, b"bad\xff.safetensors")
    write_raw(bad, {"t": {"dtype": "F32", "shape": [4], "data_offsets": [0, 100]}}, b"\0" * 16)
    with pytest.raises(stload.CorruptFileError) as caught:
        stload.get_weight_iterator(SPELLINGS[spelling](bad))
    e = caught.value
    assert e.path == os.fsdecode(bad)
    assert e.file_name == os.fsdecode(b"bad\xff.safetensors")
    assert os.fsencode(e.path) == bad
    # The message is display text: the undecodable byte is shown as \xff, never a surrogate.
    assert str(e).startswith("bad\\xff.safetensors: ")
    str(e).encode("utf-8")  # printable anywhere
    assert e.tensor == "t"


def test_a_missing_non_utf8_file_is_file_not_found_with_a_filename_that_round_trips(raw_dir):
    missing = os.path.join(raw_dir, b"gone\xfe.safetensors")
    with pytest.raises(stload.NotFoundError) as caught:
        stload.inspect(missing)
    e = caught.value
    assert isinstance(e, FileNotFoundError)
    assert os.fsencode(e.filename) == missing
    assert e.file_name == os.fsdecode(b"gone\xfe.safetensors")


def test_a_bad_non_utf8_file_in_a_list_is_named(raw_file, raw_dir):
    bad = os.path.join(raw_dir, b"x\xe9y.safetensors")
    with open(bad, "wb") as f:
        f.write(b"not a safetensors file")
    with pytest.raises(stload.Error) as caught:
        stload.multi_thread_safetensors_weights_iterator([raw_file, os.fsdecode(bad)])
    assert os.fsencode(caught.value.path) == bad


def test_a_warning_naming_a_non_utf8_index_is_a_runtime_warning(tmp_path):
    # An index is JSON, so it names UTF-8 shards; its own name can be anything.
    directory = os.fsencode(tmp_path)
    write_safetensors(os.path.join(directory, b"s.safetensors"), _tensors())
    index = os.path.join(directory, b"m\xe9.safetensors.index.json")
    with open(index, "w") as f:
        json.dump({"metadata": {"total_size": 1},
                   "weight_map": {"a": "s.safetensors", "b": "s.safetensors"}}, f)
    with pytest.warns(RuntimeWarning, match=r"m\\xe9\.safetensors\.index\.json: .*total_size"):
        it = stload.get_weight_iterator(index)
    assert [name for name, _ in it] == ["a", "b"]


def test_a_path_of_the_wrong_type_is_a_type_error_as_in_open(tmp_path):
    for bad in (42, 1.5, bytearray(b"m.safetensors"), None):
        with pytest.raises(TypeError, match="str, bytes or os.PathLike"):
            stload.get_weight_iterator(bad)
        with pytest.raises(TypeError, match="str, bytes or os.PathLike"):
            stload.inspect(bad)
        with pytest.raises(TypeError, match="str, bytes or os.PathLike"):
            stload.safetensors_weights_iterator([bad])


# --- Item 12: an embedded NUL must not cut the path short. ---

NUL_CALLS = {
    "get_weight_iterator": lambda p: stload.get_weight_iterator(p),
    "safetensors_weights_iterator": lambda p: stload.safetensors_weights_iterator([p]),
    "safetensors_weights_iterator_one": lambda p: stload.safetensors_weights_iterator(p),
    "multi_thread": lambda p: stload.multi_thread_safetensors_weights_iterator([p]),
    "load_file": lambda p: stload.load_file(p),
    "inspect": lambda p: stload.inspect(p),
}


@pytest.mark.parametrize("kind", ["str", "bytes", "pathlike"])
@pytest.mark.parametrize("call", NUL_CALLS)
def test_an_embedded_nul_is_a_value_error_not_a_shorter_path(tmp_path, call, kind):
    shard = write_safetensors(tmp_path / "m.safetensors", _tensors())
    path = shard + "\0/../../x"
    if kind == "bytes":
        path = os.fsencode(path)
    elif kind == "pathlike":
        path = pathlib.PurePosixPath(shard + "\0x")  # os.fspath keeps the NUL
        assert "\0" in os.fspath(path)
    with pytest.raises(ValueError, match="embedded null byte") as caught:
        NUL_CALLS[call](path)
    assert isinstance(caught.value, stload.InvalidArgumentError)


def test_a_nul_in_any_listed_file_is_refused(tmp_path):
    shard = write_safetensors(tmp_path / "m.safetensors", _tensors())
    other = write_safetensors(tmp_path / "n.safetensors", _tensors("n."))
    with pytest.raises(ValueError, match="embedded null byte"):
        stload.safetensors_weights_iterator([other, shard + "\0"])


def test_the_private_module_refuses_a_nul_too(tmp_path):
    shard = write_safetensors(tmp_path / "m.safetensors", _tensors())
    from stload import _stload
    with pytest.raises(ValueError, match="embedded null byte"):
        _stload.open_model(shard + "\0/x", stload.LoadConfig())
    with pytest.raises(ValueError, match="embedded null byte"):
        _stload.open_files([shard + "\0/x"], stload.LoadConfig())
    with pytest.raises(ValueError, match="embedded null byte"):
        _stload.inspect(os.fsencode(shard) + b"\0")
