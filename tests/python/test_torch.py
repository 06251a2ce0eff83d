"""torch.from_dlpack of stload BF16 (and, where torch has them, FP8) weights: values, no copy.

Runs only where Debian's python3-torch is installed. CI does not install it (about 1 GiB of
packages for these few tests; the DLPack structures themselves are checked without torch in
test_dtypes.py), so there it is skipped.
"""

from __future__ import annotations

import warnings

import numpy
import pytest

import stload
from st_writer import write_safetensors

torch = pytest.importorskip(
    "torch", reason="python3-torch is not installed (CI does not install it; "
                    "apt-get install python3-torch to run the torch.from_dlpack tests)")

BF16_VALUES = [[1.0, -2.0], [0.5, 3.140625]]
BF16_BITS = numpy.array([0x3F80, 0xC000, 0x3F00, 0x4049], "<u2").tobytes()


@pytest.fixture(params=[True, False], ids=["pread", "mmap"])
def weights(request, tmp_path):
    path = write_safetensors(tmp_path / "bf16.safetensors", {
        "w": ("BF16", [2, 2], BF16_BITS),
        "e4m3": ("F8_E4M3", [4], bytes([0x38, 0x40, 0xB8, 0x30])),
        "e5m2": ("F8_E5M2", [4], bytes([0x3C, 0x40, 0xBC, 0x38])),
    })
    return dict(stload.get_weight_iterator(path, {"disable_mmap": request.param}))


def test_from_dlpack_of_a_bf16_weight(weights):
    tensor = weights["w"]
    t = torch.from_dlpack(tensor)
    assert t.dtype == torch.bfloat16
    assert t.shape == (2, 2)
    assert t.float().tolist() == BF16_VALUES
    assert t.data_ptr() == tensor.numpy().ctypes.data  # zero-copy


def test_torch_tensor_keeps_the_memory_alive(weights):
    t = torch.from_dlpack(weights.pop("w"))
    weights.clear()
    assert t.float().tolist() == BF16_VALUES


@pytest.mark.parametrize("name, torch_dtype", [("e4m3", "float8_e4m3fn"),
                                               ("e5m2", "float8_e5m2")])
def test_from_dlpack_of_fp8_weights(weights, name, torch_dtype):
    if not hasattr(torch, torch_dtype):
        pytest.skip(f"torch {torch.__version__} has no {torch_dtype}")
    try:
        t = torch.from_dlpack(weights[name])
    except (RuntimeError, BufferError, TypeError) as e:
        pytest.skip(f"torch {torch.__version__} does not import DLPack FP8 codes: {e}")
    assert t.dtype == getattr(torch, torch_dtype)
    assert t.float().tolist() == [1.0, 2.0, -1.0, 0.5]


def test_from_numpy_of_a_numpy_dtype_weight(tmp_path):
    path = write_safetensors(tmp_path / "f32.safetensors",
                             {"w": ("F32", [3], numpy.float32([1, 2, 3]).tobytes())})
    array = stload.load_file(path)["w"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch warns once about read-only arrays
        t = torch.from_numpy(array)
    assert t.tolist() == [1.0, 2.0, 3.0]
    assert t.data_ptr() == array.ctypes.data  # zero-copy
