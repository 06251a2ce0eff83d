"""``stload.torch.load_file``: Hugging Face's ``safetensors.torch.load_file``, read by stload.

Every tensor in fresh, writable memory (read in parallel, 8 threads, pread), as a dict in the
order of the data in the files.
"""

from __future__ import annotations

from ._safe_open import safe_open


def load_file(filename, device="cpu", *, load_config=None) -> dict:
    """``{name: torch.Tensor}`` of every tensor in ``filename`` (a file, a directory of shards or
    an index), on ``device`` (read on the CPU, then moved)."""
    with safe_open(filename, framework="pt", device=device, load_config=load_config) as f:
        return f.load_all()
