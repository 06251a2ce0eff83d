"""framework="pt" | "paddle" | "numpy" | "stload" on every entry point, and the default.

Torch tests need torch (Debian's python3-torch 1.13, or PyPI's) and are skipped without it;
paddle tests need paddle. The paddle path (DLPack capsules of every weight) is also checked with
a stand-in paddle module whose from_dlpack is torch's.
"""

from __future__ import annotations

import gc
import hashlib
import subprocess
import sys

import numpy
import pytest

import stload
from helpers import cli_hashes, is_torch_tensor, python_hashes, raw_bytes, shard_files
from st_writer import write_safetensors
from test_dtypes import TENSORS

REAL_DEFAULT_FRAMEWORK = True  # conftest: this module sees the real default

NUMPY_NAMES = {n for n, (dtype, _, _) in TENSORS.items() if stload.DTYPES[dtype].numpy is not None}
# The entry points, each as f(path, framework) over a one-file checkpoint.
ENTRY_POINTS = {
    "get_weight_iterator": lambda p, **kw: dict(stload.get_weight_iterator(p, **kw)),
    "get_weight_iterator_pread": lambda p, **kw: dict(
        stload.get_weight_iterator(p, {"disable_mmap": True}, **kw)),
    "safetensors_weights_iterator": lambda p, **kw: dict(
        stload.safetensors_weights_iterator([p], **kw)),
    "multi_thread": lambda p, **kw: dict(
        stload.multi_thread_safetensors_weights_iterator([p], max_workers=2, **kw)),
    "multi_thread_pread": lambda p, **kw: dict(
        stload.multi_thread_safetensors_weights_iterator([p], 2, True, **kw)),
    "load_file": lambda p, **kw: stload.load_file(p, **kw),
}


def run_python(code: str, *, block_torch: bool = False) -> str:
    """Runs ``code`` in a fresh interpreter (``import torch`` failing if ``block_torch``)."""
    prelude = "import sys\n"
    if block_torch:
        prelude += "sys.modules['torch'] = None  # import torch: ImportError\n"
    done = subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def all_dtypes(tmp_path_factory) -> str:
    return write_safetensors(tmp_path_factory.mktemp("fw") / "all.safetensors", TENSORS)


# The numpy dtypes every torch has (1.13 has no uint16, uint32, uint64).
COMMON_NAMES = NUMPY_NAMES - {"u16", "u32", "u64"}


@pytest.fixture(scope="module")
def common_dtypes(tmp_path_factory) -> str:
    return write_safetensors(tmp_path_factory.mktemp("fw") / "common.safetensors",
                             {n: TENSORS[n] for n in COMMON_NAMES})


@pytest.fixture(scope="module")
def numpy_dtypes(tmp_path_factory) -> str:
    return write_safetensors(tmp_path_factory.mktemp("fw") / "np.safetensors",
                             {n: TENSORS[n] for n in NUMPY_NAMES})


# --- the default and the framework argument ----------------------------------------------------

def test_importing_stload_does_not_import_torch():
    out = run_python("import stload\nprint('torch' in sys.modules)")
    assert out.strip() == "False"


def test_default_is_torch_when_importable_else_numpy():
    try:
        import torch  # noqa: F401
        expected = "pt"
    except ImportError:
        expected = "numpy"
    assert stload.default_framework() == expected
    out = run_python("import stload\nprint(stload.default_framework())", block_torch=True)
    assert out.strip() == "numpy"


def test_without_torch_the_default_yields_numpy_arrays(numpy_dtypes, all_dtypes):
    code = f"""
import numpy, stload
d = stload.load_file({numpy_dtypes!r})
assert all(type(v) is numpy.ndarray for v in d.values()), {{k: type(v) for k, v in d.items()}}
try:
    stload.load_file({all_dtypes!r})
except TypeError as e:
    print(e)
"""
    out = run_python(code, block_torch=True)
    assert "has no numpy dtype" in out and 'framework="stload"' in out


def test_framework_names():
    assert stload.FRAMEWORKS == ("pt", "paddle", "numpy", "stload")


@pytest.mark.parametrize("bad", ["tf", "PT", "", "jax"])
def test_an_unknown_framework_is_a_value_error_before_any_file_is_opened(tmp_path, bad):
    missing = tmp_path / "missing.safetensors"
    for call in (lambda: stload.get_weight_iterator(missing, framework=bad),
                 lambda: stload.safetensors_weights_iterator([missing], framework=bad),
                 lambda: stload.multi_thread_safetensors_weights_iterator([missing],
                                                                         framework=bad),
                 lambda: stload.load_file(missing, framework=bad)):
        with pytest.raises(stload.InvalidArgumentError, match="framework must be"):
            call()


def test_a_framework_of_another_type_is_a_type_error(numpy_dtypes):
    with pytest.raises(TypeError, match="framework must be a str"):
        stload.load_file(numpy_dtypes, framework=1)


def test_framework_is_keyword_only(numpy_dtypes):
    with pytest.raises(TypeError):
        stload.load_file(numpy_dtypes, None, "numpy")


# --- "stload" and "numpy" ----------------------------------------------------------------------

@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_stload_framework_yields_the_extension_values(all_dtypes, entry):
    weights = ENTRY_POINTS[entry](all_dtypes, framework="stload")
    assert set(weights) == set(TENSORS)
    for name, (dtype, shape, raw) in TENSORS.items():
        w = weights[name]
        assert isinstance(w, numpy.ndarray if name in NUMPY_NAMES else stload.Tensor)
        assert raw_bytes(w).tobytes() == raw


def test_stload_framework_returns_the_weight_iterator_itself(all_dtypes):
    assert isinstance(stload.get_weight_iterator(all_dtypes, framework="stload"),
                      stload.WeightIterator)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("framework", ["numpy", "np"])
def test_numpy_framework_yields_numpy_arrays(numpy_dtypes, entry, framework):
    weights = ENTRY_POINTS[entry](numpy_dtypes, framework=framework)
    assert set(weights) == NUMPY_NAMES
    for name, w in weights.items():
        dtype, shape, raw = TENSORS[name]
        assert type(w) is numpy.ndarray
        assert w.dtype == stload.DTYPES[dtype].numpy and w.dtype != object
        assert w.shape == tuple(shape)
        assert w.tobytes() == raw
        assert not w.flags.writeable


def test_numpy_framework_refuses_a_dtype_numpy_lacks_and_stops(all_dtypes):
    it = stload.safetensors_weights_iterator([all_dtypes], framework="numpy")
    got = []
    with pytest.raises(TypeError) as caught:
        for name, w in it:
            got.append(name)
    message = str(caught.value)
    first = next(n for n in TENSORS if n not in NUMPY_NAMES)  # file order
    assert f"weight {first!r}" in message and TENSORS[first][0] in message
    assert "has no numpy dtype" in message and 'framework="stload"' in message
    assert ".numpy()" in message
    assert got == [n for n in TENSORS][:len(got)] and first not in got
    with pytest.raises(StopIteration):  # closed: the readers stopped
        next(it)


def test_numpy_asarray_of_a_tensor_is_a_type_error_not_an_object_array(all_dtypes):
    weights = stload.load_file(all_dtypes, framework="stload")
    for name in TENSORS:
        if name in NUMPY_NAMES:
            continue
        t = weights[name]
        for convert in (numpy.asarray, numpy.array, lambda x: numpy.array([x])):
            with pytest.raises(TypeError, match=f"dtype {t.dtype} has no numpy dtype.*numpy\\(\\)"):
                convert(t)
        assert t.numpy().dtype in (numpy.uint8, numpy.uint16)  # the raw view is still there


def test_the_iterator_wrapper_has_the_weight_iterator_interface(numpy_dtypes):
    with stload.get_weight_iterator(numpy_dtypes, framework="numpy") as it:
        assert iter(it) is it
        name, w = next(it)
        assert isinstance(w, numpy.ndarray)
        assert it.stats["bytes_read"] > 0
        assert it.stats["checkpoints"] == 1
    with pytest.raises(StopIteration):
        next(it)
    assert w.tobytes() == TENSORS[name][2]  # a weight outlives the iterator


# --- torch -------------------------------------------------------------------------------------

def torch_dtype(torch, dtype: str):
    from stload._frameworks import TORCH_DTYPE_NAMES

    return getattr(torch, TORCH_DTYPE_NAMES.get(dtype, "-"), None)


def expected_torch_shape(dtype, shape):
    if dtype == "F4":  # float4_e2m1fn_x2: two elements a byte
        return tuple(shape[:-1]) + (shape[-1] // 2,)
    return tuple(shape)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_pt_framework_yields_torch_tensors_of_every_dtype_torch_has(torch, all_dtypes, entry):
    has = {n for n, (dtype, _, _) in TENSORS.items() if torch_dtype(torch, dtype) is not None}
    weights = ENTRY_POINTS[entry](
        write_safetensors(f"{all_dtypes}.{entry}.torch-has.safetensors",
                          {n: TENSORS[n] for n in has}), framework="pt")
    assert set(weights) == has
    for name, t in weights.items():
        dtype, shape, raw = TENSORS[name]
        assert isinstance(t, torch.Tensor)
        assert t.dtype == torch_dtype(torch, dtype), name
        assert tuple(t.shape) == expected_torch_shape(dtype, shape), name
        assert t.device.type == "cpu"
        assert raw_bytes(t).tobytes() == raw, name


@pytest.mark.parametrize("framework", ["pt", "torch"])
def test_pt_values(torch, all_dtypes, framework):
    weights = stload.load_file(all_dtypes, framework="stload")
    with_torch = {}
    for name, w in weights.items():
        try:
            with_torch[name] = stload._frameworks.converter(
                stload._frameworks.resolve(framework))(w, name)
        except TypeError:
            pass
    numpy.testing.assert_array_equal(with_torch["f32"].numpy(),
                                     numpy.frombuffer(TENSORS["f32"][2], "<f4").reshape(2, 3))
    assert with_torch["bf16"].float().tolist() == [[1.0, -2.0], [0.5, 3.140625]]
    assert with_torch["c64"].tolist() == [1 + 2j, -3.5j]
    assert with_torch["bool"].tolist() == [False, True, True, False]
    assert with_torch["scalar"].shape == () and with_torch["scalar"].item() == 42.0
    if "f8_e4m3" in with_torch:
        assert with_torch["f8_e4m3"].float().flatten().tolist() == [1.0, 2.0, -1.0, 0.5]
    if "u16" in with_torch:
        assert with_torch["u16"].tolist() == [1, 65535]


@pytest.mark.parametrize("disable_mmap", [True, False], ids=["pread", "mmap"])
def test_pt_tensors_are_zero_copy_views(torch, all_dtypes, disable_mmap):
    weights = stload.load_file(all_dtypes, {"disable_mmap": disable_mmap}, framework="stload")
    convert = stload._frameworks.converter("pt")
    for name, w in weights.items():
        if torch_dtype(torch, TENSORS[name][0]) is None or not TENSORS[name][2]:
            continue
        t = convert(w, name)
        assert t.data_ptr() == raw_bytes(w).ctypes.data, name  # the stload buffer itself


def test_pt_tensors_through_mmap_point_into_the_file_mapping(torch, tmp_path):
    path = write_safetensors(tmp_path / "mapped.safetensors",
                             {"w": ("F32", [4096], numpy.arange(4096, dtype="<f4").tobytes()),
                              "b": ("BF16", [4096], bytes(8192))})
    weights = stload.load_file(path, {"disable_mmap": False}, framework="pt")
    maps = []
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 6 and fields[5] == str(path):
                lo, hi = (int(x, 16) for x in fields[0].split("-"))
                maps.append((lo, hi))
    assert maps, "the file is not mapped"
    for t in weights.values():
        assert any(lo <= t.data_ptr() < hi for lo, hi in maps)  # no copy: the page cache


def test_pt_tensors_keep_their_memory_alive(torch, llama, cli):
    tensors = stload.load_file(llama, {"disable_mmap": True}, framework="pt")
    gc.collect()
    assert python_hashes(tensors.items()) == cli_hashes(cli, llama)


def test_pt_missing_dtypes_are_type_errors_naming_them(torch, all_dtypes):
    missing = [n for n, (dtype, _, _) in TENSORS.items() if torch_dtype(torch, dtype) is None]
    assert {"f6_e2m3", "f6_e3m2"} <= set(missing)
    weights = stload.load_file(all_dtypes, framework="stload")
    for name in missing:
        dtype = TENSORS[name][0]
        with pytest.raises(TypeError) as caught:
            stload._frameworks.converter("pt")(weights[name], name)
        message = str(caught.value)
        assert f"weight {name!r}" in message and f"dtype {dtype} has no torch dtype" in message
        assert 'framework="stload"' in message and ".numpy()" in message
        if not dtype.startswith("F6"):
            assert f"torch {torch.__version__} has no torch." in message
    with pytest.raises(TypeError, match=r"weight '\w+': safetensors dtype \S+ has no torch dtype"):
        stload.load_file(all_dtypes, framework="pt")


def test_pt_fp8_is_a_type_error_where_torch_lacks_it(torch, deepseek, cli):
    if hasattr(torch, "float8_e4m3fn"):
        weights = stload.load_file(deepseek, framework="pt")
        assert python_hashes(weights.items()) == cli_hashes(cli, deepseek)
        assert {t.dtype for t in weights.values()} >= {torch.float8_e4m3fn, torch.bfloat16}
        return
    with pytest.raises(TypeError, match=r"dtype F8_E4M3 has no torch dtype: torch .* has no "
                                        r"torch\.float8_e4m3fn"):
        stload.load_file(deepseek, framework="pt")


def test_pt_f4_with_an_odd_last_dimension_is_a_type_error(torch, tmp_path):
    if torch_dtype(torch, "F4") is None:
        pytest.skip(f"torch {torch.__version__} has no float4_e2m1fn_x2")
    path = write_safetensors(tmp_path / "f4.safetensors", {"odd": ("F4", [2, 3], bytes(3))})
    with pytest.raises(TypeError, match="last dimension must be even"):
        stload.load_file(path, framework="pt")


@pytest.mark.parametrize("entry", ["get_weight_iterator", "safetensors_weights_iterator",
                                   "multi_thread", "multi_thread_pread", "load_file"])
def test_llama_through_every_entry_point_into_torch_parameters(torch, llama, cli, entry):
    files = shard_files(llama)
    if entry == "get_weight_iterator":
        pairs = stload.get_weight_iterator(llama, framework="pt")
    elif entry == "safetensors_weights_iterator":
        pairs = stload.safetensors_weights_iterator(files, framework="pt")
    elif entry == "multi_thread":
        pairs = stload.multi_thread_safetensors_weights_iterator(files, 8, framework="pt")
    elif entry == "multi_thread_pread":
        pairs = stload.multi_thread_safetensors_weights_iterator(files, 3, True, framework="pt")
    else:
        pairs = stload.load_file(llama, framework="pt").items()
    expected = cli_hashes(cli, llama)
    copied = {}
    for name, w in pairs:
        param = torch.empty(w.shape, dtype=w.dtype)  # what an engine does: allocate, copy_
        param.copy_(w)
        copied[name] = hashlib.sha256(raw_bytes(param)).hexdigest()
    assert copied == expected


def test_pt_default_when_torch_is_importable(torch, common_dtypes):
    weights = stload.load_file(common_dtypes)
    assert all(is_torch_tensor(w) for w in weights.values())


def test_pt_framework_does_not_warn_about_read_only_memory(torch, common_dtypes):
    code = f"""
import warnings, stload
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    d = stload.load_file({common_dtypes!r}, framework="pt")
    d2 = stload.load_file({common_dtypes!r}, framework="pt")
assert len(d) == {len(COMMON_NAMES)}
assert not caught, [str(w.message) for w in caught]
"""
    run_python(code)


def test_pt_framework_without_torch_is_an_import_error(numpy_dtypes):
    code = f"""
import stload
try:
    stload.load_file({numpy_dtypes!r}, framework="pt")
except ImportError as e:
    print(e)
"""
    assert 'framework="pt" needs torch' in run_python(code, block_torch=True)


# --- paddle ------------------------------------------------------------------------------------

def test_paddle_framework_hands_every_weight_over_dlpack(stand_in_paddle, torch, all_dtypes):
    weights = stload.load_file(all_dtypes, framework="stload")
    convert = stload._frameworks.converter("paddle")
    for name, w in weights.items():
        dtype, shape, raw = TENSORS[name]
        if stload.DTYPES[dtype].dlpack is None and name not in NUMPY_NAMES:  # F4, F6
            with pytest.raises(TypeError, match=f"{dtype} has no DLPack type"):
                convert(w, name)
            continue
        try:
            t = convert(w, name)
        except TypeError as e:  # the consumer lacks the type (torch 1.13: FP8, bool, uint16...)
            assert name not in ("f32", "f16", "bf16", "i64", "i8", "u8"), e
            assert f"cannot take dtype {dtype} through DLPack" in str(e)
            continue
        assert tuple(t.shape) == tuple(shape)
        assert raw_bytes(t).tobytes() == raw, name
        if raw:
            assert t.data_ptr() == raw_bytes(w).ctypes.data, name  # no copy
    del weights
    gc.collect()


def test_paddle_capsules_keep_the_memory_alive(stand_in_paddle, torch, llama, cli):
    tensors = stload.load_file(llama, {"disable_mmap": True}, framework="paddle")
    gc.collect()
    assert python_hashes(tensors.items()) == cli_hashes(cli, llama)


def test_array_capsule_refuses_what_it_cannot_describe():
    with pytest.raises(TypeError, match="no DLPack type"):
        stload._stload._dlpack_of_array(numpy.array(["a"]))
    with pytest.raises(ValueError, match="C-contiguous"):
        stload._stload._dlpack_of_array(numpy.zeros((4, 4), "<f4")[:, 1])
    with pytest.raises(TypeError, match="big-endian"):
        stload._stload._dlpack_of_array(numpy.zeros(4, ">f4"))


def test_paddle_framework_without_paddle_is_an_import_error(numpy_dtypes):
    try:
        import paddle  # noqa: F401
        pytest.skip("paddle is installed")
    except ImportError:
        pass
    with pytest.raises(ImportError, match='framework="paddle" needs paddle.*paddlepaddle'):
        stload.load_file(numpy_dtypes, framework="paddle")


def test_real_paddle(llama, cli, numpy_dtypes):
    paddle = pytest.importorskip("paddle", reason="paddle is not installed (PyPI: paddlepaddle)")
    tensors = stload.load_file(llama, framework="paddle")
    assert all(isinstance(t, paddle.Tensor) for t in tensors.values())
    hashes = {n: hashlib.sha256(t.view(paddle.uint8).numpy().tobytes()).hexdigest()
              for n, t in tensors.items()}  # paddle's own bytes
    assert hashes == cli_hashes(cli, llama)
    for name, t in stload.load_file(numpy_dtypes, framework="paddle").items():
        assert t.numpy().tobytes() == TENSORS[name][2]
