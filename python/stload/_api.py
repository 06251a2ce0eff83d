"""The original weight loader's functions, on stload.

Every function yields ``(name, array)`` pairs without copying the weights: ``array`` is a
read-only numpy array viewing the memory stload read into (and keeping it alive), or, for dtypes
numpy lacks (BF16, FP8, F4, F6), a :class:`stload.Tensor` (DLPack + a raw numpy view). The
returned iterators release the GIL while they wait for data and stop their reader threads when
closed or dropped half-way.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Iterable, Mapping
from typing import Union

from . import _stload
from ._errors import InvalidArgumentError

LoadConfig = _stload.LoadConfig
Tensor = _stload.Tensor
WeightIterator = _stload.WeightIterator

PathLike = Union[str, "os.PathLike[str]"]

# load_file keeps every weight, so reading ahead must not wait for weights to be released.
_UNLIMITED = 1 << 62


def _as_config(load_config: Union[None, Mapping, LoadConfig]) -> LoadConfig:
    if load_config is None:
        return LoadConfig()
    if isinstance(load_config, LoadConfig):
        return load_config
    if isinstance(load_config, Mapping):
        return LoadConfig(**dict(load_config))
    raise TypeError("load_config must be a dict of extra-config keys, a stload.LoadConfig or "
                    f"None, not {type(load_config).__name__}")


def _as_paths(files: Union[PathLike, Iterable[PathLike]]) -> list[str]:
    if isinstance(files, (str, os.PathLike)):
        return [os.fspath(files)]  # one file, not the characters of its name
    return [os.fspath(f) for f in files]


def get_weight_iterator(model_path: PathLike,
                        load_config: Union[None, Mapping, LoadConfig] = None) -> WeightIterator:
    """Iterates over every weight of a checkpoint as ``(name, array)`` pairs.

    Args:
        model_path: a ``.safetensors`` file, a directory of shards, or a
            ``model.safetensors.index.json``.
        load_config: the ``model_loader_extra_config`` dict (``enable_multithread_load``,
            ``num_threads``, ``disable_mmap``, and stload's keys ``direct_io``, ``io_uring``,
            ``uring_depth``, ``chunk_bytes``, ``memory_limit``, ``order``), a
            :class:`stload.LoadConfig`, or None for the defaults (one reader thread).

    Every header is read and validated before this returns. Raises :class:`stload.Error`
    (a missing file is a ``FileNotFoundError``, a corrupt one a ``ValueError``, a bad config key
    a ``ValueError`` naming the key); a read error is raised by ``next()``.
    """
    return _stload.open_model(os.fspath(model_path), _as_config(load_config))


def safetensors_weights_iterator(files: Iterable[PathLike]) -> WeightIterator:
    """Iterates over the weights of ``files`` (``.safetensors`` paths), one file after another,
    with one reader thread, as ``(name, array)`` pairs.

    Files come in list order, each file's weights in the order of their data in the file.
    """
    config = LoadConfig(enable_multithread_load=False, order="file")
    return _stload.open_files(_as_paths(files), config)


def multi_thread_safetensors_weights_iterator(files: Iterable[PathLike], max_workers: int = 8,
                                              disable_mmap: bool = False) -> WeightIterator:
    """Iterates over the weights of ``files`` with ``max_workers`` reader threads, as
    ``(name, array)`` pairs.

    Args:
        files: ``.safetensors`` paths.
        max_workers: reader threads, an integer >= 1.
        disable_mmap: False reads through mmap (the weights view the page cache); True reads
            into stload's buffers with pread.

    The threads read several files at once and split each into chunks, so one large file
    keeps them all busy too. Weights come in natural name order (``layers.2`` before
    ``layers.10``) across all the files (the original yields them in completion order).
    """
    if (isinstance(max_workers, bool) or not isinstance(max_workers, numbers.Integral)
            or max_workers < 1):
        raise InvalidArgumentError(f"max_workers must be an integer >= 1, not {max_workers!r}",
                                   code="invalid argument")
    if not isinstance(disable_mmap, bool):
        raise InvalidArgumentError(f"disable_mmap must be True or False, not {disable_mmap!r}",
                                   code="invalid argument")
    config = LoadConfig(enable_multithread_load=True, num_threads=int(max_workers),
                        disable_mmap=disable_mmap)
    return _stload.open_files(_as_paths(files), config)


def load_file(path: PathLike,
              load_config: Union[None, Mapping, LoadConfig] = None) -> dict[str, object]:
    """Loads every weight of a checkpoint into a dict ``{name: array}``.

    Without ``load_config``, reads through mmap with 8 threads: the arrays view the page cache,
    so keeping them all costs no extra memory. ``path`` is a ``.safetensors`` file (or a
    directory or an index, as everywhere in stload).
    """
    if load_config is None:
        config = LoadConfig(enable_multithread_load=True, disable_mmap=False,
                            memory_limit=_UNLIMITED)
    else:
        config = _as_config(load_config)
    with _stload.open_model(os.fspath(path), config) as weights:
        return dict(weights)


def inspect(path: PathLike) -> dict:
    """Validates a checkpoint and describes it without reading weights.

    Returns what ``stload inspect --json`` prints: ``{"tensors": [{"name", "dtype", "shape",
    "file", "data_offsets": [begin, end]}, ...] (file order), "metadata": {...},
    "total_bytes": int}``.
    """
    return _stload.inspect(os.fspath(path))
