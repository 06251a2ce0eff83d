"""How each safetensors dtype appears in Python (the table in python/README-section.md)."""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import numpy

from . import _stload


class DTypeInfo(NamedTuple):
    """How weights of one safetensors dtype are yielded.

    Attributes:
        name: the safetensors dtype name, e.g. ``"BF16"``.
        bits: bits per element.
        numpy: the numpy dtype of the yielded array, or None when the weight is a
            :class:`stload.Tensor` (numpy has no such type).
        view: for a :class:`stload.Tensor`, the numpy dtype of ``Tensor.numpy()``, the raw bits
            (``uint16`` for BF16, ``uint8`` otherwise); None for numpy dtypes.
        dlpack: the DLPack ``(type code, bits, lanes)`` that ``Tensor.__dlpack__`` exports, or None
            (numpy dtypes, whose arrays are plain numpy arrays, and F4/F6, whose bit packing the
            format leaves unspecified).
    """

    name: str
    bits: int
    numpy: Optional[numpy.dtype]
    view: Optional[numpy.dtype]
    dlpack: Optional[Tuple[int, int, int]]


def _table() -> dict[str, DTypeInfo]:
    table = {}
    for name, bits, np_name, view_name, dlpack in _stload.dtype_table():
        table[name] = DTypeInfo(
            name=name,
            bits=bits,
            numpy=None if np_name is None else numpy.dtype(np_name),
            view=None if view_name is None else numpy.dtype(view_name),
            dlpack=dlpack,
        )
    return table


#: Every safetensors dtype name -> :class:`DTypeInfo`, in the format's order.
DTYPES: dict[str, DTypeInfo] = _table()


def dtype_name(value) -> str:
    """The safetensors dtype name of a yielded weight (a numpy array or a :class:`stload.Tensor`).

    ``dtype_name(numpy.zeros(2, numpy.float32)) == "F32"``; for a Tensor, ``value.dtype``.
    """
    if isinstance(value, _stload.Tensor):
        return value.dtype
    for info in DTYPES.values():
        if info.numpy is not None and info.numpy == value.dtype:
            return info.name
    raise ValueError(f"numpy dtype {value.dtype} is not a safetensors dtype")
