"""The original weight loader's functions, on stload.

Every function yields ``(name, tensor)`` pairs without copying the weights, as the tensors of
``framework=`` (see :mod:`stload._frameworks`): ``"pt"`` torch tensors, ``"paddle"`` paddle
tensors, ``"numpy"`` numpy arrays, ``"stload"`` what the extension makes (a read-only numpy
array viewing the memory stload read into, or, for dtypes numpy lacks (BF16, FP8, F4, F6), a
:class:`stload.Tensor`: DLPack + a raw numpy view). The default, None, is torch when it can be
imported, else numpy. Every value keeps its memory alive. The returned iterators release the GIL
while they wait for data and stop their reader threads when closed or dropped half-way.
"""

from __future__ import annotations

import json
import numbers
import os
from collections.abc import Iterable, Mapping
from typing import Optional, Union

import numpy

from . import _frameworks, _progress, _stload
from ._errors import InvalidArgumentError

LoadConfig = _stload.LoadConfig
Tensor = _stload.Tensor
WeightIterator = _stload.WeightIterator

# What open() takes: str (encoded as os.fsencode does, surrogate escapes included), bytes or an
# os.PathLike of either. A NUL in a path is a ValueError (stload.InvalidArgumentError); paths
# that come back (Error.path, inspect's "file") are os.fsdecode'd, so they round-trip.
PathLike = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]

# load_file keeps every weight, so reading ahead must not wait for weights to be released: unless
# the config gives a memory_limit, it has none (UINT64_MAX / 2, as `stload load --consumer keep`).
_UNLIMITED = ((1 << 64) - 1) // 2


def _as_config(load_config, default=LoadConfig) -> LoadConfig:
    """The :class:`LoadConfig` of ``load_config``: None (``default()``), a LoadConfig, a dict of
    extra-config keys, or an engine's load config object, whose ``model_loader_extra_config`` (a
    dict, a JSON string or None) is used. Another type is a TypeError; a bad key a ValueError
    naming it."""
    if load_config is None:
        return default()
    if isinstance(load_config, LoadConfig):
        return load_config
    if isinstance(load_config, Mapping):
        return LoadConfig(**dict(load_config))
    if hasattr(load_config, "model_loader_extra_config"):
        extra = load_config.model_loader_extra_config
        if isinstance(extra, (str, bytes)):
            extra = json.loads(extra) if extra.strip() else None
        if extra is None or isinstance(extra, (LoadConfig, Mapping)):
            return _as_config(extra, default)
        raise TypeError(f"{type(load_config).__name__}.model_loader_extra_config must be a dict, "
                        f"a JSON string or None, not {type(extra).__name__}")
    raise TypeError("load_config must be None, a dict of extra-config keys, a stload.LoadConfig "
                    "or an engine's load config (with model_loader_extra_config), not "
                    f"{type(load_config).__name__}")


def _open(framework: Optional[str], open_weights, progress=None, use_tqdm_on_load=False):
    """Resolves ``framework`` (and imports it) before ``open_weights()`` opens any file; reports
    progress when asked (see :mod:`stload._progress`)."""
    name = _frameworks.resolve(framework)
    convert = _frameworks.converter(name)
    weights = open_weights()
    if name != "stload":
        weights = _frameworks.FrameworkIterator(weights, name, convert)
    return _progress.with_progress(weights, progress, use_tqdm_on_load)


def _as_paths(files: Union[PathLike, Iterable[PathLike]]) -> list[PathLike]:
    if isinstance(files, (str, bytes, os.PathLike)):
        return [files]  # one file, not the characters (or bytes) of its name
    return list(files)  # the extension converts each as open() does


def get_weight_iterator(model_path: PathLike,
                        load_config: Union[None, Mapping, LoadConfig] = None, *,
                        framework: Optional[str] = None, progress=None,
                        use_tqdm_on_load: bool = False):
    """Iterates over every weight of a checkpoint as ``(name, tensor)`` pairs.

    Args:
        model_path: a ``.safetensors`` file, a directory of shards, or a
            ``model.safetensors.index.json``: str, bytes or os.PathLike, as ``open()`` takes.
        load_config: the ``model_loader_extra_config`` dict (``enable_multithread_load``,
            ``num_threads``, ``disable_mmap``, and stload's keys ``direct_io``, ``io_uring``,
            ``uring_depth``, ``chunk_bytes``, ``memory_limit``, ``order``), a
            :class:`stload.LoadConfig`, or None for the defaults (one reader thread).
        framework: ``"pt"``, ``"paddle"``, ``"numpy"``, ``"stload"``, or None (torch when it can
            be imported, else numpy).
        progress: ``progress(done_bytes, total_bytes)`` after each weight (and at the end).
        use_tqdm_on_load: a tqdm bar of the bytes yielded (rate, ETA) when tqdm is installed.

    Every header is read and validated before this returns. Raises :class:`stload.Error`
    (a missing file is a ``FileNotFoundError``, a corrupt one a ``ValueError``, a bad config key
    a ``ValueError`` naming the key, a NUL in the path a ``ValueError``); a read error is raised
    by ``next()``. A path of another type is a ``TypeError``, as in ``open()``.
    """
    config = _as_config(load_config)
    return _open(framework, lambda: _stload.open_model(model_path, config), progress,
                 use_tqdm_on_load)


def safetensors_weights_iterator(files: Iterable[PathLike], *, framework: Optional[str] = None,
                                 progress=None, use_tqdm_on_load: bool = False):
    """Iterates over the weights of ``files`` (``.safetensors`` paths), one file after another,
    with one reader thread, as ``(name, tensor)`` pairs of ``framework`` (see
    :func:`get_weight_iterator`).

    Files come in list order, each file's weights in the order of their data in the file.
    ``progress`` and ``use_tqdm_on_load`` as in :func:`get_weight_iterator`.
    """
    config = LoadConfig(enable_multithread_load=False, order="file")
    return _open(framework, lambda: _stload.open_files(_as_paths(files), config), progress,
                 use_tqdm_on_load)


def multi_thread_safetensors_weights_iterator(files: Iterable[PathLike], max_workers: int = 8,
                                              disable_mmap: bool = False, *,
                                              framework: Optional[str] = None, progress=None,
                                              use_tqdm_on_load: bool = False):
    """Iterates over the weights of ``files`` with ``max_workers`` reader threads, as
    ``(name, tensor)`` pairs of ``framework`` (see :func:`get_weight_iterator`).

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
    return _open(framework, lambda: _stload.open_files(_as_paths(files), config), progress,
                 use_tqdm_on_load)


def load_file(path: PathLike, load_config: Union[None, Mapping, LoadConfig] = None, *,
              framework: Optional[str] = None) -> dict[str, object]:
    """Loads every weight of a checkpoint into a dict ``{name: tensor}`` of ``framework``'s
    tensors (see :func:`get_weight_iterator`; None: torch when it can be imported, else numpy).

    Without ``load_config``, reads through mmap with 8 threads: the arrays view the page cache,
    so keeping them all costs no extra memory. ``path`` is a ``.safetensors`` file (or a
    directory or an index, as everywhere in stload).

    The dict keeps every weight, so the read-ahead limit (``memory_limit``, 1 GiB when streaming)
    would only make reading wait for weights that are never released: unless ``load_config``
    gives one (a dict's ``"memory_limit"`` key, or a :class:`LoadConfig` whose ``memory_limit``
    was set), there is no limit. A given limit is respected.
    """
    if load_config is None:
        config = LoadConfig(enable_multithread_load=True, disable_mmap=False)
    else:
        config = _as_config(load_config)
    if config.memory_limit is None:  # unset
        if config is load_config:  # the caller's LoadConfig: change a copy
            config = LoadConfig(**config.to_dict())
        config.memory_limit = _UNLIMITED
    with _open(framework, lambda: _stload.open_model(path, config)) as weights:
        return dict(weights)


def to_torch(weight):
    """A ``torch.Tensor`` viewing ``weight``'s memory, without a copy (what ``framework="pt"``
    yields).

    ``weight`` is a value the iterators yield with ``framework="stload"`` (a numpy array or a
    :class:`stload.Tensor`). The raw bytes go through ``torch.from_numpy`` (its warning that the
    array is not writable is silenced: numpy's own ``__dlpack__`` refuses read-only arrays) and,
    for the types numpy lacks, ``Tensor.view(dtype)``. The tensor keeps the memory alive. Writing
    through it changes stload's buffer (or, read through mmap, a private copy-on-write page),
    never the file.

    Raises TypeError, naming the dtype, for a dtype this torch does not have: F6 (no torch
    dtype); F4 before ``torch.float4_e2m1fn_x2``; the FP8 types and U16/U32/U64 in older torch
    (1.13 has none of them). Imports torch when called.
    """
    if not isinstance(weight, (Tensor, numpy.ndarray)):
        raise TypeError("to_torch takes a weight stload yielded (a numpy.ndarray or a "
                        f"stload.Tensor), not {type(weight).__name__}")
    return _frameworks.torch_converter()(weight)


def inspect(path: PathLike) -> dict:
    """Validates a checkpoint and describes it without reading weights.

    Returns what ``stload inspect --json`` prints: ``{"tensors": [{"name", "dtype", "shape",
    "file", "data_offsets": [begin, end]}, ...] (file order), "metadata": {...},
    "total_bytes": int}``. ``"file"`` is the shard's name as ``os.fsdecode`` gives it (a name
    that is not UTF-8 keeps its bytes as surrogate escapes, as ``os.listdir`` does).
    """
    return _stload.inspect(path)
