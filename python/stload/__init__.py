"""stload: fast, strict safetensors loading, with the original weight loader's Python API.

    import stload

    for name, array in stload.get_weight_iterator("path/to/model",
                                                  {"enable_multithread_load": True,
                                                   "num_threads": 8}):
        ...

    files = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    for name, array in stload.multi_thread_safetensors_weights_iterator(files, max_workers=8):
        ...

Weights are read-only numpy arrays over the memory stload read into (no copy), or, for dtypes
numpy lacks (BF16, FP8, F4, F6), :class:`stload.Tensor` objects that frameworks take through
DLPack (``torch.from_dlpack``) and that offer a raw numpy view (``Tensor.numpy()``).
:func:`stload.to_torch` makes a torch tensor of either without a copy. See :data:`stload.DTYPES`
for every dtype.
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
from ._errors import (
    CorruptFileError,
    Error,
    InvalidArgumentError,
    IoError,
    NotFoundError,
    ResourceExhaustedError,
)

# The classes are defined by the extension module; they belong to the package's public API.
for _cls in (LoadConfig, Tensor, WeightIterator, CorruptFileError, Error, InvalidArgumentError,
             IoError, NotFoundError, ResourceExhaustedError):
    _cls.__module__ = __name__
del _cls

__all__ = [
    "CorruptFileError",
    "DTYPES",
    "DTypeInfo",
    "Error",
    "InvalidArgumentError",
    "IoError",
    "LoadConfig",
    "NotFoundError",
    "ResourceExhaustedError",
    "Tensor",
    "WeightIterator",
    "__version__",
    "dtype_name",
    "get_weight_iterator",
    "inspect",
    "load_file",
    "multi_thread_safetensors_weights_iterator",
    "safetensors_weights_iterator",
    "to_torch",
]
