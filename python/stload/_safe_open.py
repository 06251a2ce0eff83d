"""``stload.safe_open``: Hugging Face's ``safetensors.safe_open``, reading through stload.

    with stload.safe_open("model.safetensors", framework="pt") as f:
        for name in f.keys():
            t = f.get_tensor(name)          # a fresh, writable tensor
        part = f.get_slice("lm_head.weight")[:, 1024:2048]   # reads only those bytes

Tensors are read into fresh memory the caller owns (writable, unshared), as Hugging Face's are.
``get_slice(name)[...]`` reads only the box the index selects (the engine's slice plan: one read
per contiguous run, or the covering range gathered when the runs are small); ints, slices with
a positive step and one ``...`` are taken, as by Hugging Face; a step > 1 reads the covering
box and keeps every step-th element.

Where stload differs from safetensors 0.8: the path may also be a directory of shards or an
index; an empty range at the end of a dimension (``t[2:2]`` of a size-2 dimension, ``[:]`` of a
size-0 one) is an empty result, not an error; errors are :class:`stload.Error` subclasses
(``ValueError`` for a bad index or name) rather than ``SafetensorError``.
"""

from __future__ import annotations

import numbers
import os
from typing import Optional

import numpy

from . import _dtypes, _stload
from ._errors import InvalidArgumentError
from ._frameworks import TORCH_DTYPE_NAMES
from ._load_into import as_config, memory_of, read_into
from ._progress import Reporter

_FRAMEWORKS = {"pt": "pt", "torch": "pt", "np": "numpy", "numpy": "numpy"}


def _error(message: str) -> InvalidArgumentError:
    return InvalidArgumentError(message, code="invalid argument")


def _framework(framework) -> str:
    name = _FRAMEWORKS.get(framework) if isinstance(framework, str) else None
    if name is None:
        raise _error(f"framework {framework!r} is not supported by stload.safe_open: "
                     "\"pt\" (or \"torch\") or \"numpy\" (or \"np\")")
    return name


class _Allocator:
    """Fresh, writable, C-contiguous tensors of one framework, on the CPU."""

    def __init__(self, framework: str, device) -> None:
        self.framework = framework
        self.device = device
        if framework == "pt":
            import torch

            self.torch = torch
            self.target = torch.device(device)
        elif str(device) != "cpu":
            raise _error(f"device {device!r}: numpy arrays live on the CPU (device=\"cpu\")")

    def empty(self, name: str, dtype: str, shape: list):
        if self.framework == "numpy":
            np_dtype = _dtypes.DTYPES[dtype].numpy
            if np_dtype is None:
                raise TypeError(f"tensor {name!r}: safetensors dtype {dtype} has no numpy dtype; "
                                "framework=\"pt\" gives torch tensors")
            return numpy.empty(shape, np_dtype)
        torch = self.torch
        attr = TORCH_DTYPE_NAMES.get(dtype)
        torch_dtype = getattr(torch, attr, None) if attr else None
        if torch_dtype is None:
            raise TypeError(f"tensor {name!r}: safetensors dtype {dtype} has no dtype in torch "
                            f"{torch.__version__}")
        if dtype == "F4":  # two elements a byte, the last dimension in bytes (as Hugging Face)
            if not shape or shape[-1] % 2:
                raise TypeError(f"tensor {name!r}: F4 of shape {shape}: torch.{attr} holds two "
                                "elements a byte, so the last dimension must be even")
            shape = shape[:-1] + [shape[-1] // 2]
        return torch.empty(shape, dtype=torch_dtype)

    def finish(self, tensor):
        """The tensor on the requested device."""
        if self.framework == "pt" and self.target.type != "cpu":
            return tensor.to(self.target)
        return tensor


class safe_open:  # noqa: N801 (Hugging Face's name)
    """A checkpoint opened for reading tensors by name (see the module's docstring).

    Args:
        filename: a ``.safetensors`` file (or a directory of shards, or an index).
        framework: ``"pt"`` (torch tensors) or ``"numpy"``.
        device: where tensors go (torch: any ``torch.device``; read on the CPU, then moved).
        load_config: extra-config keys, a :class:`stload.LoadConfig` or None (8 threads, pread).
    """

    def __init__(self, filename, framework: str = "pt", device="cpu", *, load_config=None):
        self._allocator = _Allocator(_framework(framework), device)
        self._config = as_config(load_config)
        self._checkpoint = _stload.open_checkpoint(filename)
        self._tensors = {name: (index, dtype, shape)
                         for index, (name, dtype, shape) in enumerate(self._checkpoint.tensors())}
        # Rank-aware loading: keys() are this rank's tensors, get_tensor and load_all give its
        # parts; get_slice still indexes the whole tensor (the caller slices).
        self._boxes = {}
        if self._config.rules:
            parts = self._checkpoint.parts(self._config)
            names = list(self._tensors)
            for name in names:
                index, dtype, shape = self._tensors[name]
                action, box, part_shape = parts[index]
                if action == "skip":
                    del self._tensors[name]
                    continue
                self._boxes[name] = box
                self._tensors[name] = (index, dtype, part_shape)
        self._file_order = list(self._tensors)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        self._checkpoint = None
        return False

    def _open(self):
        if self._checkpoint is None:
            raise _error("the checkpoint is closed (safe_open's with block has ended)")
        return self._checkpoint

    def _info(self, name):
        self._open()
        try:
            return self._tensors[name]
        except (KeyError, TypeError):
            raise _error(f"{os.path.basename(os.fsdecode(self._checkpoint.path))}: no tensor "
                         f"{name!r}") from None

    def keys(self) -> list:
        """Every tensor name, sorted."""
        self._open()
        return sorted(self._tensors)

    def offset_keys(self) -> list:
        """Every tensor name in the order of the data in the files."""
        self._open()
        return list(self._file_order)

    def metadata(self) -> Optional[dict]:
        """The ``__metadata__`` (all shards' merged), or None when there is none."""
        return self._open().metadata() or None

    def get_tensor(self, name: str):
        """The whole tensor (with rank-aware loading: this rank's part), in fresh memory."""
        index, dtype, shape = self._info(name)
        out = self._allocator.empty(name, dtype, list(shape))
        self._read([(index, memory_of(out, dtype, f"tensor {name!r}"), self._boxes.get(name))])
        return self._allocator.finish(out)

    def get_slice(self, name: str) -> "SafeSlice":
        """A view of the tensor whose ``[...]`` reads only the indexed part."""
        index, dtype, shape = self._info(name)
        if name in self._boxes:  # the whole tensor's shape: the caller slices
            shape = self._checkpoint.tensors()[index][2]
        return SafeSlice(self, name, index, dtype, list(shape))

    def load_all(self, *, progress=None, use_tqdm_on_load: bool = False) -> dict:
        """Every tensor, in file order, read in one parallel load into fresh memory."""
        self._open()
        out, entries = {}, []
        for name in self._file_order:
            index, dtype, shape = self._tensors[name]
            out[name] = self._allocator.empty(name, dtype, list(shape))
            entries.append((index, memory_of(out[name], dtype, f"tensor {name!r}"),
                            self._boxes.get(name)))
        self._read(entries, Reporter(progress, use_tqdm_on_load, "Loading safetensors"))
        return {name: self._allocator.finish(t) for name, t in out.items()}

    def _read(self, entries, reporter: Optional[Reporter] = None) -> None:
        read_into(self._open(), entries, self._config, reporter or Reporter(None, False, ""))


def _index_value(item, dim: int, size: int) -> int:
    i = int(item)
    if i < 0:
        i += size
        if i < 0:
            raise _error(f"index {int(item)} is out of bounds for dimension {dim} of size {size}")
    if i >= size:
        raise _error(f"index {i} is out of bounds for dimension {dim} of size {size}")
    return i


def _bound(value, dim: int, size: int, default: int) -> int:
    if value is None:
        return default
    if not isinstance(value, numbers.Integral):
        raise _error(f"slice bound {value!r} of dimension {dim} is not an integer")
    value = int(value)
    if value < 0:
        raise _error(f"slice bound {value} of dimension {dim} is negative (not supported, as in "
                     "safetensors)")
    if value > size:
        raise _error(f"slice bound {value} is out of bounds for dimension {dim} of size {size}")
    return value


def parse_index(index, shape: list):
    """``index`` (an int, a slice, ``...`` or a tuple of them) over ``shape`` as (box: a
    ``(begin, end)`` per dimension, steps per dimension, the dimensions ints remove)."""
    items = index if isinstance(index, tuple) else (index,)
    if sum(1 for i in items if i is Ellipsis) > 1:
        raise _error("only one ellipsis (...) is allowed in an index")
    explicit = sum(1 for i in items if i is not Ellipsis)
    if explicit > len(shape):
        raise _error(f"{explicit} indices for a tensor of {len(shape)} dimensions")
    expanded = []
    for item in items:
        if item is Ellipsis:
            expanded.extend([slice(None)] * (len(shape) - explicit))
        else:
            expanded.append(item)
    expanded.extend([slice(None)] * (len(shape) - len(expanded)))
    box, steps, dropped = [], [], []
    for dim, (item, size) in enumerate(zip(expanded, shape)):
        if isinstance(item, slice):
            step = 1 if item.step is None else item.step
            if not isinstance(step, numbers.Integral) or step < 1:
                raise _error(f"slice step {item.step!r} of dimension {dim}: only steps >= 1 are "
                             "supported")
            begin = _bound(item.start, dim, size, 0)
            end = _bound(item.stop, dim, size, size)
            if begin > end:
                raise _error(f"slice {begin}:{end} of dimension {dim} is reversed")
            box.append((begin, end))
            steps.append(int(step))
        elif isinstance(item, numbers.Integral):
            i = _index_value(item, dim, size)
            box.append((i, i + 1))
            steps.append(1)
            dropped.append(dim)
        else:
            raise _error(f"index {item!r} at position {dim}: expected an int, a slice or ...")
    return box, steps, dropped


class SafeSlice:
    """One tensor of a :class:`safe_open` checkpoint, read in parts by ``[...]``."""

    def __init__(self, owner: safe_open, name: str, index: int, dtype: str, shape: list) -> None:
        self._owner = owner
        self._name = name
        self._index = index
        self._dtype = dtype
        self._shape = shape

    def get_shape(self) -> list:
        return list(self._shape)

    def get_dtype(self) -> str:
        return self._dtype

    def __getitem__(self, index):
        box, steps, dropped = parse_index(index, self._shape)
        allocator = self._owner._allocator
        part = allocator.empty(self._name, self._dtype, [e - b for b, e in box])
        whole = all(b == 0 and e == n for (b, e), n in zip(box, self._shape))
        self._owner._read([(self._index, memory_of(part, self._dtype, f"tensor {self._name!r}"),
                            None if whole else box)])
        if any(s > 1 for s in steps):
            part = part[tuple(slice(None, None, s) for s in steps)]
            part = part.contiguous() if allocator.framework == "pt" else numpy.ascontiguousarray(part)
        if dropped:
            shape = [n for d, n in enumerate(part.shape) if d not in dropped]
            part = part.reshape(shape)
        return allocator.finish(part)
