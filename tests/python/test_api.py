"""Every public function and class of the stload package, on generated checkpoints."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy
import pytest

import stload
from helpers import cli_hashes, python_hashes, run_cli, shard_files
from st_writer import write_safetensors


def test_package_exports_the_original_api():
    for name in ("get_weight_iterator", "safetensors_weights_iterator",
                 "multi_thread_safetensors_weights_iterator", "load_file", "inspect",
                 "LoadConfig", "Tensor", "Error", "DTYPES"):
        assert hasattr(stload, name), name
    assert isinstance(stload.__version__, str) and stload.__version__


@pytest.mark.parametrize("target", ["directory", "index", "file"])
def test_get_weight_iterator_takes_a_directory_an_index_or_a_file(cli, llama, target):
    path = {"directory": llama, "index": llama / "model.safetensors.index.json",
            "file": Path(shard_files(llama)[0])}[target]
    assert python_hashes(stload.get_weight_iterator(path)) == cli_hashes(cli, path)


def test_get_weight_iterator_yields_name_array_pairs(llama):
    it = stload.get_weight_iterator(str(llama))
    assert iter(it) is it
    name, value = next(it)
    assert isinstance(name, str)
    assert isinstance(value, stload.Tensor)  # the llama preset is BF16
    assert value.dtype == "BF16"
    it.close()


def test_get_weight_iterator_accepts_the_extra_config_dict(cli, llama):
    config = {"enable_multithread_load": True, "num_threads": 3, "disable_mmap": True}
    it = stload.get_weight_iterator(llama, config)
    assert python_hashes(it) == cli_hashes(cli, llama)
    assert it.stats["read_path"] == "pread"
    assert 1 < it.stats["threads"] <= 3


def test_get_weight_iterator_accepts_a_load_config(llama):
    config = stload.LoadConfig(enable_multithread_load=True, num_threads=2, disable_mmap=False)
    it = stload.get_weight_iterator(llama, config)
    for _ in it:
        pass
    assert it.stats["read_path"] == "mmap"
    assert it.stats["threads"] == 2
    assert it.stats["bytes_read"] == stload.inspect(llama)["total_bytes"]
    # Whole tensors through the mapping: the file bytes are the tensor bytes, shard by shard.
    by_path = it.stats["file_bytes_by_read_path"]
    assert by_path == {"pread": 0, "mmap": it.stats["bytes_read"], "direct": 0}
    shards = it.stats["shards"]
    assert [s["file"] for s in shards] == sorted(s["file"] for s in shards)
    assert all(s["read_path"] == "mmap" for s in shards)
    assert sum(s["file_bytes"] for s in shards) == it.stats["bytes_read"]


def test_default_config_reads_with_one_thread(llama):
    it = stload.get_weight_iterator(llama)
    list(it)
    assert it.stats["threads"] == 1


def test_natural_order_is_the_default(llama):
    names = [name for name, _ in stload.get_weight_iterator(llama)]
    layer_numbers = [int(n.split(".")[2]) for n in names if n.startswith("model.layers.")]
    assert layer_numbers == sorted(layer_numbers)  # layers.2 before layers.10


def test_safetensors_weights_iterator_reads_the_files_in_turn(cli, llama):
    files = shard_files(llama)
    it = stload.safetensors_weights_iterator(files)
    names = []
    hashes = {}
    for name, value in it:
        names.append(name)
        hashes.update(python_hashes([(name, value)]))
    assert hashes == cli_hashes(cli, llama)
    assert it.stats["threads"] == 1
    # File by file: every tensor of the first file comes before any of the second.
    first_file = {t["name"] for t in stload.inspect(files[0])["tensors"]}
    assert set(names[:len(first_file)]) == first_file


def test_safetensors_weights_iterator_takes_path_objects_and_a_single_path(cli, llama):
    files = [Path(f) for f in shard_files(llama)]
    assert python_hashes(stload.safetensors_weights_iterator(files)) == cli_hashes(cli, llama)
    one = files[0]
    assert python_hashes(stload.safetensors_weights_iterator(one)) == cli_hashes(cli, one)


def test_safetensors_weights_iterator_of_no_files_is_empty():
    assert list(stload.safetensors_weights_iterator([])) == []


@pytest.mark.parametrize("disable_mmap", [False, True])
def test_multi_thread_iterator(cli, llama, disable_mmap):
    it = stload.multi_thread_safetensors_weights_iterator(shard_files(llama), max_workers=4,
                                                          disable_mmap=disable_mmap)
    assert python_hashes(it) == cli_hashes(cli, llama)
    assert it.stats["read_path"] == ("pread" if disable_mmap else "mmap")
    assert 1 < it.stats["threads"] <= 4


def test_multi_thread_iterator_defaults_to_eight_workers_and_mmap(tmp_path):
    # Ten files: enough separate reads for ten threads (fewer are started when there is less).
    files = [write_safetensors(tmp_path / f"m{i}.safetensors",
                               {f"w{i}": ("F32", [4], numpy.float32([i] * 4).tobytes())})
             for i in range(10)]
    it = stload.multi_thread_safetensors_weights_iterator(files)
    assert len(list(it)) == 10
    assert it.stats["read_path"] == "mmap"
    assert it.stats["threads"] == 8


def test_load_file_returns_a_dict_of_every_weight(cli, llama):
    file = shard_files(llama)[1]
    weights = stload.load_file(file)
    assert isinstance(weights, dict)
    assert python_hashes(weights.items()) == cli_hashes(cli, file)


def test_load_file_with_a_config(cli, llama):
    weights = stload.load_file(llama, {"disable_mmap": True})
    assert python_hashes(weights.items()) == cli_hashes(cli, llama)


UNLIMITED = (2**64 - 1) // 2


@pytest.mark.parametrize("load_config, memory_limit", [
    (None, UNLIMITED),
    ({"disable_mmap": True}, UNLIMITED),
    ({"disable_mmap": True, "memory_limit": None}, UNLIMITED),
    ({"memory_limit": "64KiB"}, 64 << 10),
    ({"memory_limit": 1 << 30}, 1 << 30),
    (stload.LoadConfig(disable_mmap=True), UNLIMITED),
    (stload.LoadConfig(memory_limit="1GiB"), 1 << 30),
    (stload.LoadConfig.from_json('{"memory_limit": 4096}'), 4096),
], ids=["none", "dict", "dict-none", "dict-64KiB", "dict-1GiB", "config", "config-1GiB",
        "json-4096"])
def test_load_file_lifts_the_memory_limit_unless_one_is_given(llama, monkeypatch, load_config,
                                                              memory_limit):
    """load_file keeps every weight: a read-ahead limit would make it read one block at a time
    once the limit is reached (`stload load --consumer keep` lifts it too)."""
    seen = []
    real_open_model = stload._api._stload.open_model

    def spy(path, config):
        seen.append(config)
        return real_open_model(path, config)

    monkeypatch.setattr(stload._api._stload, "open_model", spy)
    before = None if load_config is None else repr(load_config)
    file = shard_files(llama)[0]
    assert len(stload.load_file(file, load_config)) == len(stload.inspect(file)["tensors"])
    assert seen[0].memory_limit == memory_limit
    if load_config is not None:
        assert repr(load_config) == before  # the caller's config is not changed


def test_load_config_memory_limit_is_none_until_given():
    c = stload.LoadConfig()
    assert c.memory_limit is None  # unset: 1 GiB when streaming, no limit in load_file
    assert c.to_dict()["memory_limit"] is None
    c.memory_limit = 1 << 30
    assert c.memory_limit == 1 << 30
    assert c != stload.LoadConfig()  # given, even if equal to the default
    assert stload.LoadConfig(**c.to_dict()) == c
    c.memory_limit = None
    assert c == stload.LoadConfig()


def test_inspect_matches_the_cli(cli, deepseek):
    expected = json.loads(run_cli(cli, "inspect", str(deepseek), "--json"))
    assert stload.inspect(deepseek) == expected


def test_inspect_returns_metadata(tmp_path):
    path = write_safetensors(tmp_path / "m.safetensors",
                             {"w": ("F32", [2], numpy.float32([1, 2]).tobytes())},
                             metadata={"format": "pt", "note": "é"})
    info = stload.inspect(path)
    assert info["metadata"] == {"format": "pt", "note": "é"}
    assert info["tensors"] == [{"name": "w", "dtype": "F32", "shape": [2],
                                "file": "m.safetensors", "data_offsets": [0, 8]}]
    assert info["total_bytes"] == 8


def test_load_config_keys_and_defaults():
    c = stload.LoadConfig()
    assert c.enable_multithread_load is False
    assert c.num_threads == 8
    assert c.disable_mmap is None
    assert c.reader_threads() == 1
    assert c.order == "natural"
    c = stload.LoadConfig(enable_multithread_load=True, num_threads=4, disable_mmap=True,
                          memory_limit="512MiB", chunk_bytes=65536, order="any", io_uring=True,
                          uring_depth=8, direct_io=False)
    assert c.reader_threads() == 4
    assert c.memory_limit == 512 << 20
    assert c.chunk_bytes == 65536
    assert c.order == "any"
    assert stload.LoadConfig(**c.to_dict()) == c
    assert "num_threads=4" in repr(c)


def test_load_config_from_json_and_attribute_setters():
    c = stload.LoadConfig.from_json('{"enable_multithread_load": true, "num_threads": 2}')
    assert c.reader_threads() == 2
    c.memory_limit = "1GiB"
    c.chunk_bytes = 4096
    c.order = "file"
    c.disable_mmap = False
    assert (c.memory_limit, c.chunk_bytes, c.order, c.disable_mmap) == (1 << 30, 4096, "file",
                                                                          False)
    c.disable_mmap = None
    assert c.disable_mmap is None
    c.validate()


def test_load_config_none_means_unset():
    assert stload.LoadConfig(disable_mmap=None) == stload.LoadConfig()


def test_iterator_is_a_context_manager(llama):
    with stload.get_weight_iterator(llama) as it:
        next(it)
    with pytest.raises(StopIteration):
        next(it)


def test_dtype_name_of_yielded_values(deepseek):
    seen = {stload.dtype_name(v) for _, v in stload.get_weight_iterator(deepseek)}
    assert seen == {"F8_E4M3", "F32", "BF16"}
    assert stload.dtype_name(numpy.zeros(1, numpy.float32)) == "F32"


def test_paths_may_be_relative(cli, llama, monkeypatch):
    monkeypatch.chdir(llama)
    file = os.path.basename(shard_files(llama)[0])
    assert python_hashes(stload.get_weight_iterator(file)) == cli_hashes(cli, llama / file)


def test_a_list_of_files_loads_as_one_checkpoint(cli, llama, tmp_path):
    files = shard_files(llama)
    it = stload.multi_thread_safetensors_weights_iterator(list(reversed(files)), max_workers=2)
    assert it.stats["checkpoints"] == 1  # one pool of readers and one arena for every file
    assert python_hashes(it) == cli_hashes(cli, llama)
    # A subset of the directory's shards.
    it = stload.multi_thread_safetensors_weights_iterator(files[:2], max_workers=2)
    assert it.stats["checkpoints"] == 1
    assert python_hashes(it) == cli_hashes(cli, files[0]) | cli_hashes(cli, files[1])
    # Files from two directories.
    other = write_safetensors(tmp_path / "extra.safetensors",
                              {"extra": ("F32", [2], numpy.float32([1, 2]).tobytes())})
    it = stload.multi_thread_safetensors_weights_iterator([files[0], other], max_workers=2)
    assert {name for name, _ in it} == set(cli_hashes(cli, files[0])) | {"extra"}


def test_the_single_threaded_iterator_keeps_the_lists_order(llama):
    files = list(reversed(shard_files(llama)))  # not in name order
    names = [name for name, _ in stload.safetensors_weights_iterator(files)]
    expected = [t["name"] for f in files for t in sorted(
        stload.inspect(f)["tensors"], key=lambda t: t["data_offsets"][0])]
    assert names == expected


def test_a_tensor_in_two_listed_files_is_an_error(llama):
    files = shard_files(llama)
    with pytest.raises(ValueError, match=os.path.basename(files[0])):
        stload.multi_thread_safetensors_weights_iterator([files[0], files[0]], max_workers=2)


def test_an_empty_list_yields_nothing():
    assert list(stload.safetensors_weights_iterator([])) == []
    assert list(stload.multi_thread_safetensors_weights_iterator([], max_workers=2)) == []
