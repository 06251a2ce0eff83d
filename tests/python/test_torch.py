"""torch.from_dlpack of stload BF16 (and, where torch has them, FP8) weights: values, no copy;
stload.to_torch of every dtype.

Runs where torch is installed (CI installs Debian's python3-torch through
scripts/install-deps.sh); skipped elsewhere, e.g. in scripts/test-wheel.sh's venv (the DLPack
structures themselves are checked without torch in test_dtypes.py).
"""

from __future__ import annotations

import gc
import subprocess
import sys
import warnings

import numpy
import pytest

import stload
from helpers import raw_bytes
from st_writer import write_safetensors
from test_dtypes import TENSORS

torch = pytest.importorskip(
    "torch", reason="torch is not installed ("
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


# safetensors dtype -> torch dtype name; F4 and F6 have none.
TORCH_DTYPES = {"BOOL": "bool", "U8": "uint8", "I8": "int8", "I16": "int16", "U16": "uint16",
                "F16": "float16", "I32": "int32", "U32": "uint32", "F32": "float32",
                "F64": "float64", "I64": "int64", "U64": "uint64", "C64": "complex64",
                "BF16": "bfloat16", "F8_E5M2": "float8_e5m2", "F8_E4M3": "float8_e4m3fn",
                "F8_E8M0": "float8_e8m0fnu", "F8_E4M3FNUZ": "float8_e4m3fnuz",
                "F8_E5M2FNUZ": "float8_e5m2fnuz"}


@pytest.fixture(scope="module", params=[True, False], ids=["pread", "mmap"])
def every_dtype(request, tmp_path_factory):
    path = write_safetensors(tmp_path_factory.mktemp("to_torch") / "all.safetensors", TENSORS)
    return stload.load_file(path, {"disable_mmap": request.param}, framework="stload")


@pytest.mark.parametrize("name", TENSORS)
def test_to_torch_views_every_dtype_torch_has(every_dtype, name):
    dtype = TENSORS[name][0]
    weight = every_dtype[name]
    torch_dtype = getattr(torch, TORCH_DTYPES.get(dtype, "-"), None)
    if torch_dtype is None:  # F4, F6; FP8 and U16/U32/U64 in older torch (1.13)
        with pytest.raises(TypeError, match=dtype if dtype in ("F4", "F6_E2M3", "F6_E3M2")
                           else "torch"):
            stload.to_torch(weight)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning escapes (torch's first: see below)
        try:
            t = stload.to_torch(weight)
        except TypeError as e:
            if dtype.startswith("F8") or dtype.startswith("U"):
                pytest.skip(f"torch {torch.__version__} has {torch_dtype} but cannot take it: {e}")
            raise
    assert t.dtype == torch_dtype
    assert tuple(t.shape) == tuple(TENSORS[name][1])
    if t.numel():
        assert t.data_ptr() == raw_bytes(weight).ctypes.data  # zero-copy
    if isinstance(weight, numpy.ndarray):
        numpy.testing.assert_array_equal(t.numpy(), weight)
    elif dtype == "BF16" and t.numel():
        assert t.float().tolist() == BF16_VALUES


def test_to_torch_tensor_keeps_the_memory_alive(tmp_path):
    path = write_safetensors(tmp_path / "alive.safetensors", {
        "f32": ("F32", [3], numpy.float32([1, 2, 3]).tobytes()),
        "bf16": ("BF16", [2, 2], BF16_BITS),
    })
    tensors = {n: stload.to_torch(w) for n, w in stload.load_file(path).items()}
    gc.collect()
    assert tensors["f32"].tolist() == [1.0, 2.0, 3.0]
    assert tensors["bf16"].float().tolist() == BF16_VALUES


def test_to_torch_does_not_warn_about_read_only_arrays(tmp_path):
    # torch warns once a process, so a fresh process is needed for the first from_numpy.
    path = write_safetensors(tmp_path / "w.safetensors",
                             {"w": ("F32", [3], numpy.float32([1, 2, 3]).tobytes())})
    code = f"""
import warnings
import stload
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    t = stload.to_torch(stload.load_file({str(path)!r}, framework="stload")["w"])
assert t.tolist() == [1.0, 2.0, 3.0]
assert not caught, [str(w.message) for w in caught]
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_to_torch_of_something_else_is_a_type_error():
    with pytest.raises(TypeError, match="to_torch"):
        stload.to_torch([1.0, 2.0])


@pytest.mark.parametrize("disable_mmap", [False, True], ids=["mmap", "pread"])
def test_in_place_ops_on_weights_never_crash_nor_touch_the_file(cli, llama, disable_mmap):
    # An engine's in-place op on a yielded weight (w.mul_(scale)): read through mmap it used to
    # kill the process with SIGSEGV. The mapping is copy-on-write now; the file stays unchanged.
    from helpers import cli_hashes

    before = cli_hashes(cli, llama)
    script = f"""
import stload, torch
changed = 0
for name, w in stload.get_weight_iterator({str(llama)!r}, {{"enable_multithread_load": True,
        "num_threads": 2, "disable_mmap": {disable_mmap}}}, framework="pt"):
    if w.is_floating_point() and w.numel():
        w.add_(1)
        changed += 1
print(changed)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, (done.returncode, done.stderr)
    assert int(done.stdout) > 0
    assert cli_hashes(cli, llama) == before
