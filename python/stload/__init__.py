"""stload: fast, strict safetensors loading, with the original weight loader's Python API.

    import stload

    for name, array in stload.get_weight_iterator("path/to/model",
                                                  {"enable_multithread_load": True,
                                                   "num_threads": 8}):
        ...

    files = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    for name, array in stload.multi_thread_safetensors_weights_iterator(files, max_workers=8):
        ...

Every function takes ``framework="pt" | "paddle" | "numpy" | "stload"``; the default is torch
when it can be imported (imported once, when first needed), else numpy. Weights are never
copied: torch and paddle tensors and numpy arrays view the memory stload read into and keep it
alive; they are read-only. ``"stload"`` gives the extension's own values: read-only numpy arrays,
or, for dtypes numpy lacks (BF16, FP8, F4, F6), :class:`stload.Tensor` objects (DLPack, and a
raw numpy view ``Tensor.numpy()``). :func:`stload.to_torch` makes a torch tensor of either.
``stload.integrations.vllm``, ``.sglang`` and ``.fastdeploy`` have the engines' call shapes.

Into memory the caller owns (fresh, writable tensors): :func:`stload.load_into` (the fastest
path: ``{name: tensor}``, read in parallel with the GIL released), :class:`stload.safe_open`
(Hugging Face's ``safe_open``, with ``get_slice`` reading only the indexed bytes), and
``stload.torch.load_file`` / ``stload.numpy.load_file`` (Hugging Face's ``load_file``).
See :data:`stload.DTYPES` for every dtype.
"""

from ._stload import __version__
from ._api import (
    LoadConfig,
    Tensor,
    WeightIterator,
    get_weight_iterator,
    inspect,
    load_file,
    multi_thread_safetensors_weights_iterator,
    safetensors_weights_iterator,
    to_torch,
)
from ._dtypes import DTYPES, DTypeInfo, dtype_name
from ._load_into import load_into
from ._safe_open import SafeSlice, safe_open
from . import numpy, torch  # stload.numpy.load_file, stload.torch.load_file (torch imported lazily)
from ._frameworks import FRAMEWORKS, default_framework
from ._errors import (
    CorruptFileError,
    Error,
    InvalidArgumentError,
    IoError,
    NotFoundError,
    ResourceExhaustedError,
    UnsupportedError,
)

# The classes are defined by the extension module; they belong to the package's public API.
for _cls in (LoadConfig, Tensor, WeightIterator, CorruptFileError, Error, InvalidArgumentError,
             IoError, NotFoundError, ResourceExhaustedError, UnsupportedError):
    _cls.__module__ = __name__
del _cls

__all__ = [
    "CorruptFileError",
    "DTYPES",
    "DTypeInfo",
    "Error",
    "FRAMEWORKS",
    "InvalidArgumentError",
    "IoError",
    "LoadConfig",
    "NotFoundError",
    "ResourceExhaustedError",
    "SafeSlice",
    "Tensor",
    "UnsupportedError",
    "WeightIterator",
    "__version__",
    "default_framework",
    "dtype_name",
    "get_weight_iterator",
    "inspect",
    "load_file",
    "load_into",
    "multi_thread_safetensors_weights_iterator",
    "safe_open",
    "safetensors_weights_iterator",
    "to_torch",
]
