"""What the engine modules share: opening files as one checkpoint, yielding a framework's tensors."""

from __future__ import annotations

import numbers
import os
import re
from collections.abc import Iterable
from typing import Optional

from .. import _api, _frameworks, _stload
from .._errors import InvalidArgumentError


def paths(files) -> list:
    return _api._as_paths(files)


def open_files(files, framework: str, *, threads: int, disable_mmap: bool, order: Optional[str],
               use_tqdm: bool = False):
    """``files`` as one checkpoint, read by ``threads`` readers, yielding ``framework``'s tensors.

    ``order``: "file" (each file's weights in the order of their data, the files in list order)
    or None (stload's default: natural name order across the files). ``use_tqdm``: a tqdm bar
    of the bytes yielded.
    """
    files = paths(files)
    config = _api.LoadConfig(enable_multithread_load=threads > 1, disable_mmap=disable_mmap)
    if threads > 1:
        config.num_threads = threads
    if order is not None:
        config.order = order
    return _api._open(framework, lambda: _stload.open_files(files, config),
                      use_tqdm_on_load=bool(use_tqdm))


def positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InvalidArgumentError(f"{what} must be an integer >= 1, not {value!r}",
                                   code="invalid argument")
    return int(value)


class Filtered(_frameworks.WeightsWrapper):
    """``weights`` without the pairs ``skip(name)`` is true for; same interface otherwise."""

    def __init__(self, weights, skip) -> None:
        super().__init__(weights)
        self._skip = skip

    def __next__(self):
        while True:
            name, value = next(self._weights)
            if not self._skip(name):
                return name, value


_EXPERT = re.compile(r"\.experts\.(\d+)\.")


def expert_filter(local_expert_ids: Iterable[int]):
    """A skip(name) for names of experts (``.experts.<id>.``) whose id is not in the set."""
    keep = set(local_expert_ids)

    def skip(name: str) -> bool:
        m = _EXPERT.search(name)
        return m is not None and int(m.group(1)) not in keep

    return skip


class DropCacheAfterLoad(_frameworks.WeightsWrapper):
    """``weights``, then, once they are exhausted, ``posix_fadvise(DONTNEED)`` on every file, so
    the page cache does not keep the checkpoint (pages still mapped by weights kept alive stay)."""

    def __init__(self, weights, files: list) -> None:
        super().__init__(weights)
        self._files = files

    def __next__(self):
        try:
            return next(self._weights)
        except StopIteration:
            self._drop()
            raise

    def _drop(self) -> None:
        files, self._files = self._files, []
        advise = getattr(os, "posix_fadvise", None)
        if advise is None:
            return
        for f in files:
            try:
                fd = os.open(f, os.O_RDONLY)
            except OSError:
                continue
            try:
                advise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            except OSError:
                pass
            finally:
                os.close(fd)
