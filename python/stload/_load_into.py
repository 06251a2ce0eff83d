"""``stload.load_into``: tensors read straight into memory the caller owns (the fastest path).

Where the bytes go, per tensor: a ``torch.Tensor`` (CPU, contiguous), a ``numpy.ndarray``
(writable, C-contiguous), or anything with the buffer protocol (``bytearray``, ``memoryview``,
``mmap``: raw bytes) or ``__dlpack__`` (paddle and others; CPU, contiguous). A typed destination
must have the tensor's dtype, or be ``uint8`` (raw bytes); its size in bytes must be the tensor's.
The C++ engine reads with the GIL released, in parallel across and within tensors.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Optional, Union

import numpy

from . import _api, _dtypes, _stload
from ._errors import InvalidArgumentError
from ._frameworks import TORCH_DTYPE_NAMES
from ._progress import ProgressFn, Reporter

LoadConfig = _stload.LoadConfig


def as_config(load_config) -> LoadConfig:
    """``load_config`` as a LoadConfig (see ``_api._as_config``); None means 8 reader threads
    with pread, the fastest default for reading into caller memory."""
    return _api._as_config(load_config, lambda: LoadConfig(enable_multithread_load=True))


def _refuse(what: str, why: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"{what} {why}", code="invalid argument")


def _torch_memory(target, dtype: str, what: str):
    if target.device.type != "cpu":
        raise _refuse(what, f"is on {target.device}; load_into reads into CPU memory (load, then "
                            "copy to the device)")
    if not target.is_contiguous():
        raise _refuse(what, "is not contiguous; pass target.contiguous() or a fresh tensor")
    torch = sys.modules["torch"]
    want = getattr(torch, TORCH_DTYPE_NAMES.get(dtype, ""), None)
    if target.dtype != want and target.dtype != torch.uint8:
        raise TypeError(f"{what} is {target.dtype}, the tensor is {dtype} "
                        f"({'torch.' + TORCH_DTYPE_NAMES[dtype] if want is not None else 'no torch dtype'}"
                        "; torch.uint8 takes raw bytes)")
    return (target.data_ptr(), target.numel() * target.element_size())


def _numpy_memory(target: numpy.ndarray, dtype: str, what: str):
    want = _dtypes.DTYPES[dtype].numpy
    if target.dtype != want and target.dtype != numpy.uint8:
        raise TypeError(f"{what} is numpy {target.dtype}, the tensor is {dtype} "
                        f"({want if want is not None else 'no numpy dtype'}; uint8 takes raw "
                        "bytes)")
    if not target.flags.writeable:
        raise _refuse(what, "is read-only; pass a writable array")
    if not target.flags.c_contiguous:
        raise _refuse(what, "is not C-contiguous; pass numpy.ascontiguousarray(target)")
    return (target.ctypes.data, target.nbytes)


def memory_of(target, dtype: str, what: str):
    """What the extension takes for ``target``: an (address, size) pair for torch tensors and
    numpy arrays (checked here), else the object (buffer protocol or DLPack, checked there)."""
    torch = sys.modules.get("torch")  # a torch tensor means torch is imported
    if torch is not None and isinstance(target, torch.Tensor):
        return _torch_memory(target, dtype, what)
    if isinstance(target, numpy.ndarray):
        return _numpy_memory(target, dtype, what)
    return target


def read_into(checkpoint, entries, config: LoadConfig, reporter: Reporter) -> dict:
    """``checkpoint.load_into(entries, ...)`` with ``reporter``; returns the stats dict."""
    try:
        return checkpoint.load_into(entries, config, reporter if reporter.active else None)
    finally:
        reporter.close()


def load_into(path, destinations: Mapping, load_config=None, *,
              progress: Optional[ProgressFn] = None, use_tqdm_on_load: bool = False) -> dict:
    """Reads each named tensor of the checkpoint at ``path`` straight into the caller's memory.

    Args:
        path: a ``.safetensors`` file, a directory of shards or an index (str, bytes, PathLike).
        destinations: ``{name: tensor}``; each value is a CPU ``torch.Tensor`` or a
            ``numpy.ndarray`` of the tensor's dtype (or uint8 for raw bytes), contiguous and
            exactly the tensor's size, or any writable object with the buffer protocol or
            ``__dlpack__`` of that size. With rank-aware loading (``rules`` and tp/ep/pp keys in
            ``load_config``) each receives this rank's part and must be the part's size; a
            tensor this rank does not get is an error.
        load_config: extra-config keys (dict), a :class:`stload.LoadConfig`, an engine's load
            config with ``model_loader_extra_config``, or None (8 reader threads, pread).
        progress: ``progress(done_bytes, total_bytes)``, called every 50 ms and at the end.
        use_tqdm_on_load: show a tqdm bar (bytes, rate, ETA).

    Returns the load's stats (as :attr:`stload.WeightIterator.stats`). The GIL is released while
    the threads read; Ctrl-C (or an exception from ``progress``) stops them within 50 ms plus one
    chunk and propagates. Raises :class:`stload.InvalidArgumentError` for a name the checkpoint
    lacks or memory of the wrong size, layout or device, TypeError for the wrong dtype or type,
    and stload's errors for the files.
    """
    if not isinstance(destinations, Mapping):
        raise TypeError(f"destinations must be a mapping {{name: tensor}}, not "
                        f"{type(destinations).__name__}")
    config = as_config(load_config)
    reporter = Reporter(progress, use_tqdm_on_load, "Loading safetensors")
    try:
        checkpoint = _stload.open_checkpoint(path)
        tensors = checkpoint.tensors()
        entries = []
        # Rank-aware loading: each destination receives this rank's part of its tensor.
        parts = checkpoint.parts(config) if config.rules else None
        for name, target in destinations.items():
            index = checkpoint.index(name) if isinstance(name, str) else None
            if index is None:
                raise InvalidArgumentError(f"{_display(checkpoint.path)}: no tensor {name!r} in "
                                           "the checkpoint", code="invalid argument")
            dtype = tensors[index][1]
            what = f"destination for tensor {name!r}"
            box = None
            if parts is not None:
                action, box, _ = parts[index]
                if action == "skip":
                    raise InvalidArgumentError(
                        f"{_display(checkpoint.path)}: tensor {name!r} is not this rank's "
                        "(the rules skip it here)", code="invalid argument")
            entries.append((index, memory_of(target, dtype, what), box))
    except BaseException:
        reporter.close()
        raise
    return read_into(checkpoint, entries, config, reporter)


def _display(path: Union[str, bytes]) -> str:
    import os

    return os.path.basename(os.fsdecode(path))
