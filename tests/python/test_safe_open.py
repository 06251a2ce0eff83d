"""stload.safe_open / get_slice and stload.{torch,numpy}.load_file (issue 12, item 4).

The oracle is numpy indexing of the tensor written by the test; where Hugging Face safetensors
is installed (scripts/test.sh installs the latest from PyPI), the same calls through it must give
the same keys, dtypes, shapes, bytes and metadata, and the same indices must be errors.
"""

from __future__ import annotations

import numpy
import pytest

import stload
from helpers import raw_bytes
from st_writer import write_safetensors

BOX = numpy.arange(2 * 3 * 4, dtype=numpy.float32).reshape(2, 3, 4)
CUBE = numpy.arange(3 * 4 * 5 * 6, dtype="<i2").reshape(3, 4, 5, 6)
ROWS = numpy.arange(64 * 48, dtype="<u2").reshape(64, 48)

# Indices both must accept, and give numpy's answer for.
GOOD = [
    0, 1, -1, (0,), (1, 2), (0, 0, 0), (slice(None), 1), (slice(1, None), slice(0, 2)),
    (Ellipsis, 1), (0, Ellipsis, 2), (Ellipsis,), slice(0, 2, 2), slice(0, 0), slice(1, 1),
    (slice(None), slice(None), slice(1, 4, 2)), (Ellipsis, slice(0, 3, 3)),
    (slice(0, 1), 2, slice(1, 3)), (slice(None), slice(1, 3)), numpy.int64(1),
]
# Indices both must refuse.
BAD = [
    2, -3, (0, 0, 0, 0), slice(0, 3), slice(5, 10), slice(2, 1), (Ellipsis, Ellipsis),
    slice(None, None, 0), slice(None, None, -1), 1.0, [0, 1], (None,), "a",
]


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    return write_safetensors(tmp_path_factory.mktemp("so") / "m.safetensors", {
        "box": ("F32", BOX.shape, BOX.tobytes()),
        "cube": ("I16", CUBE.shape, CUBE.tobytes()),
        "rows": ("U16", ROWS.shape, ROWS.tobytes()),
        "empty": ("I16", [0, 3], b""),
        "scalar": ("I64", [], numpy.int64(5).tobytes()),
        "half": ("BF16", [2, 2], bytes(range(8))),
        "f4": ("F4", [2, 4], bytes(range(4))),
    }, metadata={"format": "pt"})


def test_keys_metadata_and_descriptions(path):
    with stload.safe_open(path, framework="numpy") as f:
        assert f.keys() == sorted(["box", "cube", "rows", "empty", "scalar", "half", "f4"])
        assert f.offset_keys() == ["box", "cube", "rows", "empty", "scalar", "half", "f4"]
        assert f.metadata() == {"format": "pt"}
        s = f.get_slice("cube")
        assert s.get_shape() == [3, 4, 5, 6]
        assert s.get_dtype() == "I16"


@pytest.mark.parametrize("index", GOOD, ids=repr)
def test_slices_equal_numpy_indexing(path, index):
    with stload.safe_open(path, framework="numpy") as f:
        got = f.get_slice("box")[index]
    want = BOX[index]
    assert got.shape == want.shape and got.dtype == want.dtype
    numpy.testing.assert_array_equal(got, want)
    assert got.flags.c_contiguous and got.flags.writeable


@pytest.mark.parametrize("index", BAD, ids=repr)
def test_bad_indices_are_errors(path, index):
    with stload.safe_open(path, framework="numpy") as f:
        with pytest.raises(stload.InvalidArgumentError):
            f.get_slice("box")[index]


def test_nested_cuts_on_four_dimensions_and_large_strided_runs(path):
    with stload.safe_open(path, framework="numpy") as f:
        cube = f.get_slice("cube")
        for index in [(slice(1, 3), slice(0, 4), slice(2, 5), slice(1, 6)),
                      (1, slice(1, 3), Ellipsis, slice(0, 6, 4)), (Ellipsis, 5), (2, 3, 4, 5)]:
            numpy.testing.assert_array_equal(cube[index], CUBE[index])
        rows = f.get_slice("rows")
        for index in [(slice(None), slice(16, 32)), (slice(8, 40), slice(0, 24)), (slice(None), 47)]:
            numpy.testing.assert_array_equal(rows[index], ROWS[index])


def test_empty_scalar_and_whole_tensors(path):
    with stload.safe_open(path, framework="numpy") as f:
        assert f.get_tensor("empty").shape == (0, 3)
        assert f.get_slice("empty")[:].shape == (0, 3)  # safetensors 0.8 refuses this one
        assert f.get_tensor("scalar") == 5 and f.get_tensor("scalar").shape == ()
        assert f.get_slice("scalar")[...].shape == ()
        t = f.get_tensor("box")
        t += 1  # fresh memory: writable, the file untouched
        numpy.testing.assert_array_equal(f.get_tensor("box"), BOX)


def test_missing_dtype_framework_and_name_errors(path):
    with stload.safe_open(path, framework="np") as f:
        with pytest.raises(TypeError, match="BF16 has no numpy dtype"):
            f.get_tensor("half")
        with pytest.raises(stload.InvalidArgumentError, match="m.safetensors: no tensor 'zz'"):
            f.get_tensor("zz")
        with pytest.raises(stload.InvalidArgumentError, match="no tensor"):
            f.get_slice("zz")
    with pytest.raises(stload.InvalidArgumentError, match="is closed"):
        f.keys()
    with pytest.raises(stload.InvalidArgumentError, match="framework 'tf'"):
        stload.safe_open(path, framework="tf")
    with pytest.raises(FileNotFoundError):
        stload.safe_open(path + ".missing", framework="np")


def test_numpy_load_file(path, parity_path):
    with pytest.raises(TypeError, match="BF16"):
        stload.numpy.load_file(path)
    loaded = stload.numpy.load_file(parity_path, load_config={"direct_io": True})
    numpy.testing.assert_array_equal(loaded["cube"], CUBE)
    assert list(loaded) == ["box", "cube", "rows", "scalar"]


def test_a_cut_inside_a_byte_is_an_error(path, torch):
    with stload.safe_open(path, framework="pt") as f:
        if getattr(torch, "float4_e2m1fn_x2", None) is None:
            with pytest.raises(TypeError, match="F4"):
                f.get_slice("f4")[:, 0:2]
        else:
            with pytest.raises(stload.InvalidArgumentError):
                f.get_slice("f4")[:, 1:3]


class TestTorch:
    def test_slices_and_tensors(self, torch, path):
        with stload.safe_open(path, framework="pt") as f:
            for index in GOOD:
                got = f.get_slice("box")[index]
                assert isinstance(got, torch.Tensor)
                numpy.testing.assert_array_equal(got.numpy(), BOX[index])
            half = f.get_tensor("half")
            assert half.dtype == torch.bfloat16 and list(half.shape) == [2, 2]
            assert half.view(torch.uint8).flatten().tolist() == list(range(8))
            assert f.get_slice("half")[1].view(torch.uint8).tolist() == [4, 5, 6, 7]
            half.add_(1)  # writable, no crash

    def test_torch_load_file(self, torch, path):
        if not all(hasattr(torch, t) for t in ("float4_e2m1fn_x2", "uint16")):
            with pytest.raises(TypeError, match="has no dtype in torch"):  # F4, U16 in old torch
                stload.torch.load_file(path)
            return
        loaded = stload.torch.load_file(path)
        numpy.testing.assert_array_equal(loaded["box"].numpy(), BOX)


def reference():
    return pytest.importorskip("safetensors", reason="Hugging Face safetensors is not installed")


@pytest.fixture(scope="module")
def parity_path(tmp_path_factory):
    """The file above without F4 (Hugging Face's numpy has no F4, its torch maps it to x2)."""
    return write_safetensors(tmp_path_factory.mktemp("parity") / "p.safetensors", {
        "box": ("F32", BOX.shape, BOX.tobytes()),
        "cube": ("I16", CUBE.shape, CUBE.tobytes()),
        "rows": ("I32", ROWS.shape, ROWS.astype("<i4").tobytes()),
        "scalar": ("I64", [], numpy.int64(5).tobytes()),
    }, metadata={"format": "pt", "k": "v"})


def test_parity_with_hugging_face_numpy(parity_path):
    st = reference()
    with st.safe_open(parity_path, "np") as hf, stload.safe_open(parity_path, "np") as ours:
        assert ours.keys() == hf.keys()
        assert ours.offset_keys() == hf.offset_keys()
        assert ours.metadata() == hf.metadata()
        for name in hf.keys():
            a, b = hf.get_tensor(name), ours.get_tensor(name)
            assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
            hs, os_ = hf.get_slice(name), ours.get_slice(name)
            assert hs.get_shape() == os_.get_shape() and hs.get_dtype() == os_.get_dtype()
        for index in GOOD:
            a, b = hf.get_slice("box")[index], ours.get_slice("box")[index]
            assert a.shape == b.shape and a.tobytes() == b.tobytes(), index
        for index in BAD:
            with pytest.raises(Exception):
                hf.get_slice("box")[index]
            with pytest.raises(stload.InvalidArgumentError):
                ours.get_slice("box")[index]


def test_parity_with_hugging_face_torch(tmp_path, torch):
    reference()
    import safetensors.torch

    path = write_safetensors(tmp_path / "t.safetensors", {
        "box": ("F32", BOX.shape, BOX.tobytes()),
        "half": ("BF16", [2, 3], bytes(range(12))),
        "scalar": ("I64", [], numpy.int64(5).tobytes()),
        "flags": ("BOOL", [3], bytes([1, 0, 1])),
    })
    theirs = safetensors.torch.load_file(path)
    ours = stload.torch.load_file(path)
    assert set(ours) == set(theirs)
    for name, a in theirs.items():
        b = ours[name]
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert raw_bytes(a).tobytes() == raw_bytes(b).tobytes(), name
    with safetensors.safe_open(path, "pt") as hf, stload.safe_open(path, "pt") as f:
        for index in [(1, slice(0, 2)), (slice(None), 2), (Ellipsis,)]:
            a, b = hf.get_slice("half")[index], f.get_slice("half")[index]
            assert a.dtype == b.dtype and a.shape == b.shape
            assert raw_bytes(a.contiguous()).tobytes() == raw_bytes(b).tobytes()
