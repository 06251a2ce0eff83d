"""Weights as a framework's tensors: ``framework="pt" | "paddle" | "numpy" | "stload"``.

Every loading function takes ``framework=``; this module turns the values the extension yields
(read-only numpy arrays, and :class:`stload.Tensor` for dtypes numpy lacks) into the framework's
tensors, without copying:

- ``"pt"`` (also ``"torch"``): ``torch.Tensor`` views, through ``torch.from_numpy`` of the raw
  bytes and ``Tensor.view(dtype)`` for the types numpy lacks (BF16, FP8, the unsigned types of
  recent torch, F4 as ``float4_e2m1fn_x2``);
- ``"paddle"``: ``paddle.Tensor`` through DLPack (``paddle.utils.dlpack.from_dlpack``);
- ``"numpy"`` (also ``"np"``): numpy arrays; a dtype numpy lacks is a TypeError;
- ``"stload"``: what the extension yields, unchanged.

The default (``framework=None``) is ``"pt"`` when torch can be imported, else ``"numpy"``; torch
is imported once, the first time a default is needed, never when stload is imported.
"""

from __future__ import annotations

import threading
import warnings
from typing import Callable, Optional

import numpy

from . import _dtypes, _stload
from ._errors import InvalidArgumentError

Tensor = _stload.Tensor

FRAMEWORKS = ("pt", "paddle", "numpy", "stload")
_ALIASES = {"pt": "pt", "torch": "pt", "paddle": "paddle", "numpy": "numpy", "np": "numpy",
            "stload": "stload"}

# safetensors dtype -> torch attribute. A torch without the attribute lacks the dtype.
# F4: two elements a byte, as Hugging Face safetensors maps it (the last dimension in bytes).
TORCH_DTYPE_NAMES = {
    "BOOL": "bool", "U8": "uint8", "I8": "int8", "I16": "int16", "U16": "uint16",
    "F16": "float16", "I32": "int32", "U32": "uint32", "F32": "float32", "F64": "float64",
    "I64": "int64", "U64": "uint64", "C64": "complex64", "BF16": "bfloat16",
    "F8_E5M2": "float8_e5m2", "F8_E4M3": "float8_e4m3fn", "F8_E8M0": "float8_e8m0fnu",
    "F8_E4M3FNUZ": "float8_e4m3fnuz", "F8_E5M2FNUZ": "float8_e5m2fnuz",
    "F4": "float4_e2m1fn_x2",
}
# numpy dtypes torch.from_numpy takes in every torch stload supports (1.13 on).
_FROM_NUMPY = frozenset(numpy.dtype(d) for d in ("?", "u1", "i1", "<i2", "<f2", "<i4", "<f4",
                                                  "<f8", "<i8", "<c8"))
# A signed carrier of each element size, which torch.from_numpy always takes; the tensor is then
# reinterpreted with Tensor.view(dtype), which keeps the storage (same element size).
_CARRIERS = {1: numpy.dtype("u1"), 2: numpy.dtype("<i2"), 4: numpy.dtype("<i4"),
             8: numpy.dtype("<i8")}

_RAW_BYTES_HINT = ('framework="stload" yields a stload.Tensor whose .numpy() is a read-only view '
                   'of the raw bits')

_lock = threading.Lock()
_default: Optional[str] = None
_torch_converter = None
_paddle_converter = None


def default_framework() -> str:
    """``"pt"`` when torch can be imported, else ``"numpy"``; decided once per process."""
    global _default
    if _default is None:
        with _lock:
            if _default is None:
                try:
                    import torch  # noqa: F401  (slow: only here, once)
                    _default = "pt"
                except (ImportError, OSError):  # OSError: a torch whose libraries are broken
                    _default = "numpy"
    return _default


def resolve(framework: Optional[str]) -> str:
    """The canonical name of ``framework`` (None: the default). Raises before any file opens."""
    if framework is None:
        return default_framework()
    if not isinstance(framework, str):
        raise TypeError(f"framework must be a str or None, not {type(framework).__name__}")
    try:
        return _ALIASES[framework]
    except KeyError:
        raise InvalidArgumentError(
            f"framework must be \"pt\", \"paddle\", \"numpy\" or \"stload\" (or None: torch when "
            f"it can be imported, else numpy), not {framework!r}", code="invalid argument") from None


def _where(name: Optional[str]) -> str:
    return f"weight {name!r}: " if name is not None else ""


def _dtype_of(value) -> str:
    return value.dtype if isinstance(value, Tensor) else _dtypes.dtype_name(value)


class _TorchConverter:
    def __init__(self) -> None:
        import torch

        self.torch = torch
        self.dtypes = {n: getattr(torch, t, None) for n, t in TORCH_DTYPE_NAMES.items()}
        self.warned = False  # torch warns once a process about read-only arrays

    def missing(self, dtype: str, name: Optional[str]) -> TypeError:
        attr = TORCH_DTYPE_NAMES.get(dtype)
        has = (f"torch {self.torch.__version__} has no torch.{attr}" if attr else
               "torch has no such dtype (the safetensors format does not define how its "
               "elements are packed in a byte)")
        return TypeError(f"{_where(name)}safetensors dtype {dtype} has no torch dtype: {has}; "
                         f"{_RAW_BYTES_HINT}")

    def from_numpy(self, array: numpy.ndarray):
        if self.warned:
            return self.torch.from_numpy(array)
        # "The given NumPy array is not writable": the weights are read-only (see the README);
        # torch says it once a process, so only the first call needs the filter.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable",
                                    category=UserWarning)
            t = self.torch.from_numpy(array)
        self.warned = True
        return t

    def __call__(self, value, name: Optional[str] = None):
        if isinstance(value, numpy.ndarray):
            if value.dtype in _FROM_NUMPY:
                return self.from_numpy(value)
            try:
                dtype = _dtypes.dtype_name(value)
            except ValueError:
                raise TypeError(f"{_where(name)}numpy dtype {value.dtype} is not a safetensors "
                                "dtype") from None
            target = self.dtypes.get(dtype)
            if target is None:
                raise self.missing(dtype, name)
            raw = value
        elif isinstance(value, Tensor):
            dtype = value.dtype
            target = self.dtypes.get(dtype)
            if target is None:
                raise self.missing(dtype, name)
            if dtype == "F4" and (value.ndim == 0 or value.shape[-1] % 2):
                raise TypeError(f"{_where(name)}F4 of shape {list(value.shape)}: "
                                f"torch.{TORCH_DTYPE_NAMES['F4']} holds two elements a byte, "
                                "so the last dimension must be even; " + _RAW_BYTES_HINT)
            raw = value.numpy()  # the raw bits: same element size (F4: last dimension halved)
        else:
            raise TypeError("expected a weight stload yielded (a numpy.ndarray or a "
                            f"stload.Tensor), not {type(value).__name__}")
        t = self.from_numpy(raw.view(_CARRIERS[raw.dtype.itemsize]))
        try:
            return t.view(target)
        except RuntimeError as e:  # a torch that has the dtype but cannot reinterpret to it
            raise TypeError(f"{_where(name)}torch {self.torch.__version__} cannot view "
                            f"{dtype} as {target}: {e}; {_RAW_BYTES_HINT}") from e


class _PaddleConverter:
    def __init__(self) -> None:
        import paddle
        from paddle.utils import dlpack

        self.version = getattr(paddle, "__version__", "?")
        self.from_dlpack = dlpack.from_dlpack

    def __call__(self, value, name: Optional[str] = None):
        if isinstance(value, Tensor):
            if _dtypes.DTYPES[value.dtype].dlpack is None:
                raise TypeError(f"{_where(name)}safetensors dtype {value.dtype} has no DLPack "
                                f"type, so paddle cannot take it; {_RAW_BYTES_HINT}")
            capsule = value.__dlpack__()
        elif isinstance(value, numpy.ndarray):
            capsule = _stload._dlpack_of_array(value)
        else:
            raise TypeError("expected a weight stload yielded (a numpy.ndarray or a "
                            f"stload.Tensor), not {type(value).__name__}")
        try:
            return self.from_dlpack(capsule)
        except (RuntimeError, ValueError, TypeError, BufferError) as e:
            raise TypeError(f"{_where(name)}paddle {self.version} cannot take dtype "
                            f"{_dtype_of(value)} through DLPack ({e}); {_RAW_BYTES_HINT}") from e


def _to_numpy(value, name: Optional[str] = None):
    if isinstance(value, Tensor):
        raise TypeError(f"{_where(name)}safetensors dtype {value.dtype} has no numpy dtype; "
                        f"{_RAW_BYTES_HINT}, or framework=\"pt\" gives torch tensors")
    return value


def _identity(value, name: Optional[str] = None):
    return value


def torch_converter() -> _TorchConverter:
    global _torch_converter
    if _torch_converter is None:
        _torch_converter = _TorchConverter()
    return _torch_converter


def converter(framework: str) -> Callable:
    """``convert(value, name=None)`` for a canonical framework name; imports the framework now
    (ImportError, naming what to install, when it is missing)."""
    global _paddle_converter
    if framework == "stload":
        return _identity
    if framework == "numpy":
        return _to_numpy
    if framework == "pt":
        try:
            return torch_converter()
        except ImportError as e:
            raise ImportError(f'framework="pt" needs torch, which cannot be imported ({e})') from e
    if framework == "paddle":
        if _paddle_converter is None:
            try:
                _paddle_converter = _PaddleConverter()
            except ImportError as e:
                raise ImportError('framework="paddle" needs paddle (PyPI: paddlepaddle), which '
                                  f"cannot be imported ({e})") from e
        return _paddle_converter
    raise AssertionError(framework)


class WeightsWrapper:
    """Base of the iterators that wrap another weight iterator (``_weights``): iteration,
    ``close()``, ``with`` and ``stats`` are the wrapped one's; a subclass defines ``__next__``."""

    __slots__ = ("_weights",)

    def __init__(self, weights) -> None:
        self._weights = weights

    def __iter__(self):
        return self

    def close(self) -> None:
        """Stop reading: cancels outstanding reads and joins the reader threads."""
        self._weights.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    @property
    def stats(self) -> dict:
        """What the loading did so far (see :attr:`stload.WeightIterator.stats`)."""
        return self._weights.stats


class FrameworkIterator(WeightsWrapper):
    """A :class:`stload.WeightIterator` whose values are the framework's tensors.

    Same interface: iteration, ``close()``, ``with``, ``stats``. A weight the framework cannot
    hold is a TypeError from ``next()`` that also closes the iterator (its readers stop; later
    ``next()`` calls raise StopIteration), as a generator that raised would.
    """

    __slots__ = ("_convert", "framework")

    def __init__(self, weights, framework: str, convert: Callable) -> None:
        super().__init__(weights)
        self._convert = convert
        self.framework = framework

    def __next__(self):
        name, value = next(self._weights)
        try:
            return name, self._convert(value, name)
        except TypeError:
            self._weights.close()
            raise

    def __repr__(self) -> str:
        return f"<stload iterator of {self.framework} tensors>"


def wrap(weights, framework: str):
    """``weights`` (a WeightIterator) yielding ``framework``'s tensors."""
    if framework == "stload":
        return weights
    return FrameworkIterator(weights, framework, converter(framework))
