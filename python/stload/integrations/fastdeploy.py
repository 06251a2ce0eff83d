"""FastDeploy's weight iterators, with FastDeploy's call shapes, on stload.

Mirrors ``fastdeploy/model_executor/load_weight_utils.py`` (FastDeploy develop at commit
976ac37, 2025):

    get_weight_iterator(model_path)              # FastDeploy's; stload adds load_config=None
    safetensors_weights_iterator(safe_tensor_list)

Both yield ``(name, paddle.Tensor)``, as FastDeploy's do (``safe_open(framework="paddle")``):
zero-copy CPU tensors through DLPack that keep stload's memory alive (writing into them never
reaches the file). Paddle is imported when they are called; without it they raise ImportError (FastDeploy
does not run without paddle either). FastDeploy's drop-in will live here too.
"""

from __future__ import annotations

from typing import Any

from .. import _api, _stload
from . import _common

__all__ = ["get_weight_iterator", "safetensors_weights_iterator"]


def extra_config(load_config: Any) -> _api.LoadConfig:
    """The :class:`stload.LoadConfig` of any ``load_config`` :func:`get_weight_iterator` takes:
    None (the defaults), a :class:`stload.LoadConfig`, a dict of extra-config keys
    (``enable_multithread_load``, ``num_threads``, ``disable_mmap`` and stload's), or an engine's
    load config object, whose ``model_loader_extra_config`` (a dict, a JSON string or None) is
    used. Another type is a TypeError; a bad key a ValueError naming it."""
    return _api._as_config(load_config)


def get_weight_iterator(model_path: str, load_config: Any = None):
    """FastDeploy's ``get_weight_iterator``: every weight of the checkpoint at ``model_path``
    (a directory of shards with its index, a ``.safetensors`` file, or an index) as
    ``(name, paddle.Tensor)``.

    ``load_config`` (stload's addition; FastDeploy's own takes ``model_path`` only): see
    :func:`extra_config`. None reads with one thread, as FastDeploy's safetensors iterator does;
    ``{"enable_multithread_load": True, "num_threads": 8}`` with 8. Only safetensors
    checkpoints (FastDeploy also reads ``*.pdparams``).
    """
    config = extra_config(load_config)
    return _api._open("paddle", lambda: _stload.open_model(model_path, config))


def safetensors_weights_iterator(safe_tensor_list: list[str]):
    """FastDeploy's ``safetensors_weights_iterator``: the files one after another, one reader
    thread, each file's weights in the order of their data, as ``(name, paddle.Tensor)``."""
    return _common.open_files(safe_tensor_list, "paddle", threads=1, disable_mmap=False,
                              order="file")
