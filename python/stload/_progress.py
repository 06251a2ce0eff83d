"""Progress of a load as the engines show it: a tqdm bar of bytes (rate and ETA), or a callback.

``use_tqdm_on_load=True`` is the engines' flag (vLLM, SGLang); tqdm is used when it can be
imported, else a RuntimeWarning says so once and loading goes on without a bar.
"""

from __future__ import annotations

import warnings
from typing import Callable, Optional

from ._frameworks import WeightsWrapper

ProgressFn = Callable[[int, int], object]

_warned_no_tqdm = False  # the warning is given once a process


class Reporter:
    """``reporter(done, total)`` feeds ``progress`` and the bar; ``close()`` ends the bar."""

    def __init__(self, progress: Optional[ProgressFn], use_tqdm: bool, desc: str) -> None:
        if progress is not None and not callable(progress):
            raise TypeError(f"progress must be a callable (done, total) or None, not "
                            f"{type(progress).__name__}")
        self._progress = progress
        self._bar = None
        if use_tqdm:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                global _warned_no_tqdm
                if not _warned_no_tqdm:
                    _warned_no_tqdm = True
                    warnings.warn("stload: use_tqdm_on_load=True, but tqdm cannot be imported "
                                  "(pip install tqdm): loading without a progress bar",
                                  RuntimeWarning, stacklevel=3)
            else:
                self._bar = tqdm(total=0, unit="B", unit_scale=True, unit_divisor=1000, desc=desc)

    @property
    def active(self) -> bool:
        return self._progress is not None or self._bar is not None

    def __call__(self, done: int, total: int) -> None:
        if self._bar is not None:
            if self._bar.total != total:
                self._bar.total = total
                self._bar.refresh()
            if done > self._bar.n:
                self._bar.update(done - self._bar.n)
        if self._progress is not None:
            self._progress(done, total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None



class ProgressIterator(WeightsWrapper):
    """``weights`` reporting, after each ``next()``, the bytes yielded so far (and at the end)."""

    __slots__ = ("_source", "_reporter")

    def __init__(self, weights, reporter: Reporter) -> None:
        super().__init__(weights)
        source = weights
        while isinstance(source, WeightsWrapper):
            source = source._weights
        self._source = source  # the stload.WeightIterator, which counts the bytes
        self._reporter = reporter

    def _report(self) -> None:
        self._reporter(self._source.bytes_yielded, self._source.total_bytes)

    def __next__(self):
        try:
            pair = next(self._weights)
        except BaseException:
            self._report()
            self._reporter.close()
            raise
        self._report()
        return pair

    def close(self) -> None:
        self._reporter.close()
        super().close()


def with_progress(weights, progress: Optional[ProgressFn], use_tqdm: bool):
    """``weights`` (an iterator of stload's, possibly wrapped) reporting the bytes it yields to
    ``progress(done, total)`` and a tqdm bar; ``weights`` itself when neither is asked for."""
    reporter = Reporter(progress, use_tqdm, "Loading safetensors shards")
    return ProgressIterator(weights, reporter) if reporter.active else weights
