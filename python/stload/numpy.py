"""``stload.numpy.load_file``: Hugging Face's ``safetensors.numpy.load_file``, read by stload.

Every tensor in fresh, writable memory (read in parallel, 8 threads, pread), as a dict in the
order of the data in the files. A dtype numpy lacks (BF16, FP8, F4, F6) is a TypeError.
"""

from __future__ import annotations

from ._safe_open import safe_open


def load_file(filename, *, load_config=None) -> dict:
    """``{name: numpy.ndarray}`` of every tensor in ``filename`` (a file, a directory of shards
    or an index)."""
    with safe_open(filename, framework="numpy", load_config=load_config) as f:
        return f.load_all()
