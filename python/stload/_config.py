"""How ``stload.LoadConfig(**keys)`` (and each attribute setter) hands Python values to the C++
``LoadConfig::from_json``, which checks types and ranges and names the key at fault.

JSON, and simdjson behind ``from_json``, carry integers from -2**63 to 2**64 - 1, finite numbers
and valid Unicode only. A value outside that (``2**64``, ``-2**64``, NaN, a lone surrogate, an
object ``json`` cannot write) used to fail as "extra config is not valid JSON", without the key.
Here each one is either refused with a message naming the key and the values it takes, or replaced
by a stand-in that ``from_json`` refuses with its own message for that key (a wrong type: its
message says what the key takes). Values JSON can carry go through unchanged, so ``from_json`` stays
the one place that says what is valid.
"""

from __future__ import annotations

import json
import math
import numbers
import operator
from collections.abc import Mapping

from ._errors import InvalidArgumentError

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_UINT64_MAX = (1 << 64) - 1

# A value of a type no key takes: from_json answers with the key's own "must be ..." message.
_WRONG_TYPE = [()]


def _error(key: str, why: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"extra config key '{key}': {why}", code="invalid argument")


def _text(value: str) -> str:
    """``value`` as JSON can carry it: lone surrogates (from os.fsdecode, say) become \\udcXX."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def _integer(key: str, value: int):
    """An int, or its stand-in when it is outside what JSON carries to from_json."""
    if _INT64_MIN <= value <= _UINT64_MAX:
        return value
    if key == "num_threads":
        if value > 0:
            # from_json clamps any count to 2**20 (more threads than there is work are not
            # started): 2**64 is no different from 2**62.
            return _INT64_MAX
        return _error(key, f"must be an integer >= 1, not {value}")
    if key == "memory_limit" and value > 0:
        return _error(key, f"must be from 1 to {_UINT64_MAX} bytes (2**64 - 1) or a size string "
                           f"such as \"512MiB\", not {value}")
    if key in ("memory_limit", "chunk_bytes", "uring_depth"):
        # Negative, or (chunk_bytes, uring_depth) above a bound far below 2**64: from_json says
        # which values the key takes.
        return -1 if value < 0 else _UINT64_MAX
    return 0  # a bool key, order, an unknown key: refused by from_json for its type or name


def _carried(key: str, value):
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral):
        # numpy.int64(4) is an integer as much as 4 is (numpy.bool_ is no Integral: refused).
        return _integer(key, operator.index(value))
    if isinstance(value, float):
        return value if math.isfinite(value) else _WRONG_TYPE
    if isinstance(value, str):
        return _text(value)
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return _WRONG_TYPE  # bytes, an object, a list holding NaN...
    return value  # a list or dict: from_json refuses it for the key


def extra_config_json(keys: Mapping) -> str:
    """The JSON text of ``keys`` for LoadConfig::from_json. None values are left out (unset).
    Raises InvalidArgumentError naming the key for a value it cannot carry."""
    carried = {}
    for key, value in keys.items():
        if value is None:
            continue
        if not isinstance(key, str):
            raise InvalidArgumentError(f"extra config keys are strings, not {key!r}",
                                       code="invalid argument")
        value = _carried(key, value)
        if isinstance(value, InvalidArgumentError):
            raise value
        carried[_text(key)] = value
    return json.dumps(carried, allow_nan=False)
