"""SGLang's safetensors weight iterators, with SGLang's call shapes, on stload.

Mirrors ``python/sglang/srt/model_loader/weight_utils.py`` (SGLang main at commit 70df09b,
late 2025):

    safetensors_weights_iterator(hf_weights_files, disable_mmap=False, prefetch=False,
                                 prefetch_num_threads=4, drop_cache_after_load=False)
    multi_thread_safetensors_weights_iterator(hf_weights_files, max_workers,
                                              disable_mmap=False, drop_cache_after_load=False)

(Older SGLang, up to 0.4.x, took ``is_all_weights_sharded`` and ``decryption_key`` second and
third; those are not accepted.) Both yield ``(name, torch.Tensor)``: zero-copy CPU views that
keep stload's memory alive (writing into them never reaches the file). They import torch when
called. SGLang's loader class will live here too.
"""

from __future__ import annotations

from . import _common

__all__ = ["multi_thread_safetensors_weights_iterator", "safetensors_weights_iterator"]


def _check_bool(value, what: str) -> bool:
    if not isinstance(value, bool):
        raise _common.InvalidArgumentError(f"{what} must be True or False, not {value!r}",
                                           code="invalid argument")
    return value


def _maybe_drop_cache(weights, files, drop_cache_after_load: bool):
    if drop_cache_after_load:
        return _common.DropCacheAfterLoad(weights, files)
    return weights


def safetensors_weights_iterator(hf_weights_files: list[str], disable_mmap: bool = False,
                                 prefetch: bool = False, prefetch_num_threads: int = 4,
                                 drop_cache_after_load: bool = False):
    """SGLang's ``safetensors_weights_iterator``: the files one after another, each file's
    weights in the order of their data, as ``(name, torch.Tensor)``.

    Args:
        hf_weights_files: ``.safetensors`` paths (str, bytes or os.PathLike).
        disable_mmap: False reads through mmap; True with pread into stload's buffers.
        prefetch: with mmap, read with ``prefetch_num_threads`` reader threads ahead of the
            consumer (SGLang warms the page cache with that many threads); otherwise one
            reader thread. Ignored with ``disable_mmap=True``, as in SGLang.
        prefetch_num_threads: an integer >= 1.
        drop_cache_after_load: once every weight has been yielded, drop the files from the page
            cache (``posix_fadvise(DONTNEED)``; SGLang drops each file after its weights).
    """
    disable_mmap = _check_bool(disable_mmap, "disable_mmap")
    _check_bool(drop_cache_after_load, "drop_cache_after_load")
    threads = _common.positive_int(prefetch_num_threads, "prefetch_num_threads")
    if not (_check_bool(prefetch, "prefetch") and not disable_mmap):
        threads = 1
    files = _common.paths(hf_weights_files)
    weights = _common.open_files(files, "pt", threads=threads, disable_mmap=disable_mmap,
                                 order="file")
    return _maybe_drop_cache(weights, files, drop_cache_after_load)


def multi_thread_safetensors_weights_iterator(hf_weights_files: list[str], max_workers: int,
                                              disable_mmap: bool = False,
                                              drop_cache_after_load: bool = False):
    """SGLang's ``multi_thread_safetensors_weights_iterator``: ``max_workers`` reader threads
    over all the files, as ``(name, torch.Tensor)``; ``disable_mmap`` and
    ``drop_cache_after_load`` as in :func:`safetensors_weights_iterator`.

    SGLang yields whole files in completion order; stload yields weights in natural name order
    across the files, with one pool of readers splitting even one large file.
    """
    threads = _common.positive_int(max_workers, "max_workers")
    disable_mmap = _check_bool(disable_mmap, "disable_mmap")
    _check_bool(drop_cache_after_load, "drop_cache_after_load")
    files = _common.paths(hf_weights_files)
    weights = _common.open_files(files, "pt", threads=threads, disable_mmap=disable_mmap,
                                 order=None)
    return _maybe_drop_cache(weights, files, drop_cache_after_load)
