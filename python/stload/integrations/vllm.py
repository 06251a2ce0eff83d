"""vLLM's safetensors weight iterators, with vLLM's call shapes, on stload.

Mirrors ``vllm/model_executor/model_loader/weight_utils.py`` (vLLM 0.11.x, main of 2025-11):

    safetensors_weights_iterator(hf_weights_files, use_tqdm_on_load,
                                 safetensors_load_strategy="lazy", local_expert_ids=None)
    multi_thread_safetensors_weights_iterator(hf_weights_files, use_tqdm_on_load, max_workers=4)

Both yield ``(name, torch.Tensor)``: zero-copy CPU views that keep stload's memory
alive (an in-place op on one never reaches the file nor crashes). They import
torch when called. vLLM's plug-in (a ``stload`` load format) will live here too.
"""

from __future__ import annotations

from typing import Optional

from .._errors import UnsupportedError
from . import _common

__all__ = ["multi_thread_safetensors_weights_iterator", "safetensors_weights_iterator"]

_STRATEGIES = ("lazy", "eager", "prefetch", "torchao")


def safetensors_weights_iterator(hf_weights_files: list[str], use_tqdm_on_load: bool,
                                 safetensors_load_strategy: str = "lazy",
                                 local_expert_ids: Optional[set[int]] = None):
    """vLLM's ``safetensors_weights_iterator``: the files one after another, one reader thread,
    each file's weights in the order of their data, as ``(name, torch.Tensor)``.

    Args:
        hf_weights_files: ``.safetensors`` paths (str, bytes or os.PathLike).
        use_tqdm_on_load: a tqdm bar of the bytes yielded (rate, ETA), as vLLM shows one, when
            tqdm is installed (else a RuntimeWarning once).
        safetensors_load_strategy: ``"lazy"`` (vLLM's default: ``safe_open``, mmap) and
            ``"prefetch"`` read through mmap (stload populates the pages before yielding);
            ``"eager"`` (vLLM reads each whole file into memory) reads with pread into stload's
            buffers. ``"torchao"`` (torchao tensor subclasses) is not offered: it raises
            ``stload.UnsupportedError`` (a ValueError) naming vLLM's own iterator. Any
            other string is ``"lazy"``, as in vLLM.
        local_expert_ids: None, or the expert ids this rank holds: weights named
            ``...experts.<id>...`` of other experts are skipped (still read, not yielded).
    """
    if safetensors_load_strategy == "torchao":
        raise UnsupportedError('stload: safetensors_load_strategy="torchao" (torchao tensor '
                               "subclasses) is not supported; use vLLM's own iterator")
    weights = _common.open_files(hf_weights_files, "pt", threads=1,
                                 disable_mmap=safetensors_load_strategy == "eager", order="file",
                                 use_tqdm=use_tqdm_on_load)
    if local_expert_ids is not None:
        weights = _common.Filtered(weights, _common.expert_filter(local_expert_ids))
    return weights


def multi_thread_safetensors_weights_iterator(hf_weights_files: list[str],
                                              use_tqdm_on_load: bool, max_workers: int = 4):
    """vLLM's ``multi_thread_safetensors_weights_iterator``: ``max_workers`` reader threads over
    all the files (read through mmap, as vLLM's ``load_file`` does), as ``(name, torch.Tensor)``.

    vLLM yields whole files in completion order; stload yields weights in natural name order
    across the files, with one pool of readers splitting even one large file.
    ``use_tqdm_on_load``: a tqdm bar of the bytes yielded, as in
    :func:`safetensors_weights_iterator`.
    """
    threads = _common.positive_int(max_workers, "max_workers")
    return _common.open_files(hf_weights_files, "pt", threads=threads, disable_mmap=False,
                              order=None, use_tqdm=use_tqdm_on_load)
