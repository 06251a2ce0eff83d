"""Progress from Python (issue 12, item 6): callbacks and tqdm bars of bytes for every entry
point. (Ctrl-C within the poll interval: test_interrupt.py.)"""

from __future__ import annotations

import warnings

import pytest

import stload
from helpers import shard_files


def test_iterators_report_every_byte(llama):
    total = stload.inspect(llama)["total_bytes"]
    for open_weights in (
            lambda p: stload.get_weight_iterator(llama, {"enable_multithread_load": True},
                                                 progress=p),
            lambda p: stload.safetensors_weights_iterator(shard_files(llama), progress=p),
            lambda p: stload.multi_thread_safetensors_weights_iterator(
                shard_files(llama), max_workers=2, progress=p)):
        calls = []
        weights = open_weights(lambda done, all_bytes: calls.append((done, all_bytes)))
        count = sum(1 for _ in weights)
        assert len(calls) == count + 1  # after each weight, and at the end
        assert [d for d, _ in calls] == sorted(d for d, _ in calls)
        assert calls[-1] == (total, total)
        assert weights.stats["bytes_read"] == total  # the wrapper keeps the iterator's interface


def test_an_exception_from_progress_propagates(llama):
    def fail(done, total):
        raise RuntimeError("stop here")

    weights = stload.get_weight_iterator(llama, progress=fail)
    with pytest.raises(RuntimeError, match="stop here"):
        next(weights)
    weights.close()


def test_a_non_callable_progress_is_a_type_error(llama):
    with pytest.raises(TypeError, match="progress must be a callable"):
        stload.get_weight_iterator(llama, progress=5)


def test_vllm_use_tqdm_on_load(llama, capsys, torch, monkeypatch):
    from stload.integrations import vllm

    monkeypatch.setattr(stload._progress, "_warned_no_tqdm", False)  # the warning is once a process
    files = shard_files(llama)
    try:
        import tqdm  # noqa: F401
    except ImportError:
        with pytest.warns(RuntimeWarning, match="tqdm cannot be imported"):
            weights = vllm.multi_thread_safetensors_weights_iterator(files, True, max_workers=2)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no bar, no further warning while iterating
            assert sum(1 for _ in weights) > 0
    else:
        assert sum(1 for _ in vllm.safetensors_weights_iterator(files, True)) > 0
        assert "Loading safetensors shards" in capsys.readouterr().err
    # False: no bar and no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sum(1 for _ in vllm.safetensors_weights_iterator(files, False)) > 0
