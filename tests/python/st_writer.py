"""A minimal safetensors writer for the tests: exact bytes, every dtype, and broken files."""

from __future__ import annotations

import json
import os
import struct
from typing import Mapping, Optional, Sequence, Tuple

# (dtype name, shape, raw bytes)
TensorSpec = Tuple[str, Sequence[int], bytes]


def header_bytes(tensors: Mapping[str, TensorSpec],
                 metadata: Optional[Mapping[str, str]] = None) -> Tuple[bytes, bytes]:
    """The 8-byte length + JSON header, and the data buffer, for ``tensors`` in the given order."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = dict(metadata)
    data = bytearray()
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text, bytes(data)


def write_safetensors(path: os.PathLike | str, tensors: Mapping[str, TensorSpec],
                      metadata: Optional[Mapping[str, str]] = None) -> str:
    """Writes a valid safetensors file and returns its path as a string."""
    head, data = header_bytes(tensors, metadata)
    with open(path, "wb") as f:
        f.write(head + data)
    return os.fspath(path)


def write_raw(path: os.PathLike | str, header: dict, data: bytes) -> str:
    """Writes ``header`` (any JSON, valid or not for safetensors) followed by ``data``."""
    text = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)
    return os.fspath(path)
