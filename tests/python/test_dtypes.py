"""Every safetensors dtype: the Python type yielded, its values, its raw view, its DLPack export."""

from __future__ import annotations

import ctypes
import gc

import numpy
import pytest

import stload
from helpers import raw_bytes
from st_writer import write_safetensors

# name -> (dtype, shape, raw bytes). Values are chosen so that each type's decoding is checked
# (1.0 in each FP8 encoding, BF16 bit patterns, a complex number, ...).
F32 = numpy.array([[1.5, -2.0, 0.0], [3.25, 1e-3, -7.0]], dtype="<f4")
TENSORS = {
    "bool": ("BOOL", [4], bytes([0, 1, 1, 0])),
    "u8": ("U8", [3], bytes([0, 7, 255])),
    "i8": ("I8", [3], numpy.array([-128, 0, 127], "i1").tobytes()),
    # 1.0, 2.0, -1.0, 0.5 in each FP8 encoding.
    "f8_e5m2": ("F8_E5M2", [2, 2], bytes([0x3C, 0x40, 0xBC, 0x38])),
    "f8_e4m3": ("F8_E4M3", [2, 2], bytes([0x38, 0x40, 0xB8, 0x30])),
    "f8_e8m0": ("F8_E8M0", [4], bytes([127, 128, 126, 0])),
    "f8_e4m3fnuz": ("F8_E4M3FNUZ", [4], bytes([0x40, 0x48, 0xC0, 0x38])),
    "f8_e5m2fnuz": ("F8_E5M2FNUZ", [4], bytes([0x40, 0x44, 0xC0, 0x3C])),
    "f4": ("F4", [2, 4], bytes([0x21, 0x43, 0x65, 0x87])),
    "f6_e2m3": ("F6_E2M3", [2, 4], bytes(range(6))),
    "f6_e3m2": ("F6_E3M2", [4], bytes([9, 8, 7])),
    "i16": ("I16", [3], numpy.array([-300, 0, 300], "<i2").tobytes()),
    "u16": ("U16", [2], numpy.array([1, 65535], "<u2").tobytes()),
    "f16": ("F16", [2], numpy.array([0.5, -1.0], "<f2").tobytes()),
    # 1.0, -2.0, 0.5, 3.140625 as BF16 bit patterns.
    "bf16": ("BF16", [2, 2], numpy.array([0x3F80, 0xC000, 0x3F00, 0x4049], "<u2").tobytes()),
    "i32": ("I32", [2], numpy.array([-5, 1 << 30], "<i4").tobytes()),
    "u32": ("U32", [2], numpy.array([5, (1 << 32) - 1], "<u4").tobytes()),
    "f32": ("F32", [2, 3], F32.tobytes()),
    "f64": ("F64", [2], numpy.array([numpy.pi, -0.0], "<f8").tobytes()),
    "i64": ("I64", [2], numpy.array([-(1 << 62), 3], "<i8").tobytes()),
    "u64": ("U64", [2], numpy.array([1 << 63, 3], "<u8").tobytes()),
    "c64": ("C64", [2], numpy.array([1 + 2j, -3.5j], "<c8").tobytes()),
    "scalar": ("F32", [], numpy.float32(42.0).tobytes()),
    "empty": ("F32", [0, 3], b""),
    "empty_bf16": ("BF16", [4, 0], b""),
}

NUMPY_DTYPES = {"BOOL": "?", "U8": "u1", "I8": "i1", "I16": "<i2", "U16": "<u2", "F16": "<f2",
                "I32": "<i4", "U32": "<u4", "F32": "<f4", "F64": "<f8", "I64": "<i8",
                "U64": "<u8", "C64": "<c8"}
TENSOR_VIEWS = {"BF16": "<u2", "F8_E5M2": "u1", "F8_E4M3": "u1", "F8_E8M0": "u1",
                "F8_E4M3FNUZ": "u1", "F8_E5M2FNUZ": "u1", "F4": "u1", "F6_E2M3": "u1",
                "F6_E3M2": "u1"}
# DLPack type codes (dlpack.h 1.1): kDLBfloat 4, kDLFloat8_e4m3fn 10, kDLFloat8_e4m3fnuz 11,
# kDLFloat8_e5m2 12, kDLFloat8_e5m2fnuz 13, kDLFloat8_e8m0fnu 14.
DLPACK_TYPES = {"BF16": (4, 16, 1), "F8_E4M3": (10, 8, 1), "F8_E4M3FNUZ": (11, 8, 1),
                "F8_E5M2": (12, 8, 1), "F8_E5M2FNUZ": (13, 8, 1), "F8_E8M0": (14, 8, 1)}


@pytest.fixture(scope="module")
def all_dtypes(tmp_path_factory) -> str:
    return write_safetensors(tmp_path_factory.mktemp("dtypes") / "all.safetensors", TENSORS)


@pytest.fixture(scope="module", params=["pread", "mmap"])
def loaded(request, all_dtypes) -> dict:
    return stload.load_file(all_dtypes, {"disable_mmap": request.param == "pread"}, framework="stload")


def test_the_test_covers_every_dtype():
    assert {spec[0] for spec in TENSORS.values()} == set(stload.DTYPES)
    assert len(stload.DTYPES) == 22


def test_dtype_table():
    for name, info in stload.DTYPES.items():
        assert info.name == name
        if name in NUMPY_DTYPES:
            assert (info.numpy, info.view, info.dlpack) == (numpy.dtype(NUMPY_DTYPES[name]),
                                                            None, None)
        else:
            assert info.numpy is None
            assert info.view == numpy.dtype(TENSOR_VIEWS[name])
            assert info.dlpack == DLPACK_TYPES.get(name)
    assert stload.DTYPES["F6_E3M2"].bits == 6
    assert stload.DTYPES["C64"].bits == 64


@pytest.mark.parametrize("name", TENSORS)
def test_every_tensor_has_its_bytes(loaded, name):
    dtype, shape, raw = TENSORS[name]
    value = loaded[name]
    assert raw_bytes(value).tobytes() == raw
    assert stload.dtype_name(value) == dtype
    if dtype in NUMPY_DTYPES:
        assert isinstance(value, numpy.ndarray)
        assert value.dtype == numpy.dtype(NUMPY_DTYPES[dtype])
        assert value.shape == tuple(shape)
    else:
        assert isinstance(value, stload.Tensor)
        assert value.dtype == dtype
        assert value.shape == tuple(shape)
        assert value.ndim == len(shape)
        assert value.nbytes == len(raw)
        assert value.numpy().dtype == numpy.dtype(TENSOR_VIEWS[dtype])


def test_numpy_values(loaded):
    assert loaded["bool"].tolist() == [False, True, True, False]
    assert loaded["i8"].tolist() == [-128, 0, 127]
    assert loaded["f16"].tolist() == [0.5, -1.0]
    numpy.testing.assert_array_equal(loaded["f32"], F32)
    assert loaded["f64"][0] == numpy.pi
    assert loaded["u64"][0] == 1 << 63
    assert loaded["c64"].tolist() == [1 + 2j, -3.5j]
    assert loaded["scalar"].shape == () and loaded["scalar"] == 42.0
    assert loaded["empty"].shape == (0, 3)


def test_raw_views(loaded):
    # BF16 bits -> float32 by shifting into the high half: the view is the documented uint16.
    bits = loaded["bf16"].numpy()
    assert bits.shape == (2, 2)
    as_f32 = (bits.astype(numpy.uint32) << 16).view(numpy.float32)
    assert as_f32.tolist() == [[1.0, -2.0], [0.5, 3.140625]]
    assert loaded["f8_e4m3"].numpy().tolist() == [[0x38, 0x40], [0xB8, 0x30]]
    # Packed types: the last dimension counts bytes (4 F4 -> 2 bytes, 4 F6 -> 3 bytes).
    assert loaded["f4"].numpy().shape == (2, 2)
    assert loaded["f6_e2m3"].numpy().shape == (2, 3)
    assert loaded["f6_e3m2"].numpy().shape == (3,)
    assert loaded["empty_bf16"].numpy().shape == (4, 0)


def test_arrays_are_read_only_views(loaded):
    f32 = loaded["f32"]
    assert not f32.flags.writeable
    with pytest.raises(ValueError):
        f32[0, 0] = 1.0
    view = loaded["bf16"].numpy()
    assert not view.flags.writeable
    # Views of one Tensor share its memory (no copy).
    assert view.ctypes.data == loaded["bf16"].numpy().ctypes.data


def test_tensor_repr(loaded):
    assert repr(loaded["bf16"]) == "stload.Tensor(dtype='BF16', shape=(2, 2))"


# --- DLPack, checked through the C structures (works without any framework installed). ---

class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


class DLManagedTensor(ctypes.Structure):
    pass


DLManagedTensor._fields_ = [
    ("dl_tensor", DLTensor), ("manager_ctx", ctypes.c_void_p),
    ("deleter", ctypes.CFUNCTYPE(None, ctypes.POINTER(DLManagedTensor)))]


class DLManagedTensorVersioned(ctypes.Structure):
    pass


DLManagedTensorVersioned._fields_ = [
    ("major", ctypes.c_uint32), ("minor", ctypes.c_uint32), ("manager_ctx", ctypes.c_void_p),
    ("deleter", ctypes.CFUNCTYPE(None, ctypes.POINTER(DLManagedTensorVersioned))),
    ("flags", ctypes.c_uint64), ("dl_tensor", DLTensor)]

_api = ctypes.pythonapi
_api.PyCapsule_GetPointer.restype = ctypes.c_void_p
_api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_api.PyCapsule_SetName.argtypes = [ctypes.py_object, ctypes.c_char_p]
_api.PyCapsule_IsValid.argtypes = [ctypes.py_object, ctypes.c_char_p]

# PyCapsule_SetName keeps the pointer it is given, not a copy: the names must outlive every
# capsule, so they are module constants (a temporary bytes object would be freed at once).
USED_NAME = {False: b"used_dltensor", True: b"used_dltensor_versioned"}


def consume(capsule, versioned: bool):
    """What a DLPack consumer does: read the struct, rename the capsule, call the deleter later."""
    name = b"dltensor_versioned" if versioned else b"dltensor"
    assert _api.PyCapsule_IsValid(capsule, name)
    pointer = _api.PyCapsule_GetPointer(capsule, name)
    kind = DLManagedTensorVersioned if versioned else DLManagedTensor
    managed = ctypes.cast(pointer, ctypes.POINTER(kind)).contents
    _api.PyCapsule_SetName(capsule, USED_NAME[versioned])
    return managed


@pytest.mark.parametrize("name", [n for n, spec in TENSORS.items() if spec[0] in DLPACK_TYPES])
@pytest.mark.parametrize("versioned", [False, True])
def test_dlpack_export(loaded, name, versioned):
    tensor = loaded[name]
    assert tensor.__dlpack_device__() == (1, 0)
    capsule = tensor.__dlpack__(max_version=(1, 1) if versioned else None)
    managed = consume(capsule, versioned)
    t = managed.dl_tensor
    assert (t.dtype.code, t.dtype.bits, t.dtype.lanes) == DLPACK_TYPES[tensor.dtype]
    assert (t.device.device_type, t.device.device_id) == (1, 0)
    assert t.ndim == len(tensor.shape)
    assert [t.shape[i] for i in range(t.ndim)] == list(tensor.shape)
    row_major = [int(numpy.prod(tensor.shape[i + 1:])) for i in range(t.ndim)]
    assert [t.strides[i] for i in range(t.ndim)] == row_major
    assert t.byte_offset == 0
    if tensor.nbytes:
        assert t.data == tensor.numpy().ctypes.data  # a view, not a copy
    else:
        assert t.data is None  # the specification asks for NULL when empty
    if versioned:
        assert (managed.major, managed.minor) == (1, 1)
        assert managed.flags == 1  # DLPACK_FLAG_BITMASK_READ_ONLY
    managed.deleter(ctypes.pointer(managed))


def test_dlpack_copy(loaded):
    tensor = loaded["bf16"]
    managed = consume(tensor.__dlpack__(max_version=(1, 0), copy=True), versioned=True)
    assert managed.flags == 2  # DLPACK_FLAG_BITMASK_IS_COPIED, writable
    t = managed.dl_tensor
    assert t.data != tensor.numpy().ctypes.data
    assert ctypes.string_at(t.data, tensor.nbytes) == tensor.numpy().tobytes()
    managed.deleter(ctypes.pointer(managed))


def mapped(path: str) -> bool:
    """Whether `path` is mapped into this process."""
    with open("/proc/self/maps") as maps:
        return any(line.rstrip("\n").endswith(" " + path) for line in maps)


@pytest.mark.parametrize("versioned", [False, True])
def test_unconsumed_capsules_free_themselves(tmp_path, versioned):
    # Read through mmap, a weight's memory is the file's mapping: it stays mapped exactly as long
    # as something holds the weight's memory.
    # Over 64 KiB each: smaller weights read with others are copies that do not hold the mapping.
    big = ("BF16", [40000], bytes(80000))
    path = write_safetensors(tmp_path / "capsules.safetensors", {"bf16": big, "bf16_2": big})
    weights = stload.load_file(path, {"disable_mmap": False})
    capsules = [w.__dlpack__(max_version=(1, 0) if versioned else None)
                for w in weights.values() for _ in range(2)]
    del weights
    gc.collect()
    assert mapped(path)  # the capsules hold the memory
    del capsules  # never consumed: each capsule's destructor calls the deleter
    gc.collect()
    assert not mapped(path)


def test_consumed_capsules_are_left_to_the_consumer(tmp_path):
    path = write_safetensors(tmp_path / "consumed.safetensors", {"bf16": TENSORS["bf16"]})
    tensor = stload.load_file(path, {"disable_mmap": False})["bf16"]
    capsule = tensor.__dlpack__(max_version=(1, 0))
    managed = consume(capsule, versioned=True)
    del tensor, capsule  # renamed "used_...": the capsule no longer owns the tensor
    gc.collect()
    assert mapped(path)  # the consumer has not called the deleter yet
    managed.deleter(ctypes.pointer(managed))
    assert not mapped(path)


@pytest.mark.parametrize("max_version", [(1,), (1, 0, 0), "10", 1, (1.0, 0)])
def test_dlpack_max_version_must_be_a_pair_of_integers(loaded, max_version):
    with pytest.raises(TypeError, match="max_version"):
        loaded["bf16"].__dlpack__(max_version=max_version)


def test_dlpack_device_must_be_a_pair_of_integers(loaded):
    with pytest.raises(TypeError, match="dl_device"):
        loaded["bf16"].__dlpack__(dl_device=(1,))


def test_dlpack_refuses_other_devices_and_streams(loaded):
    with pytest.raises(BufferError):
        loaded["bf16"].__dlpack__(dl_device=(2, 0))
    with pytest.raises(ValueError):
        loaded["bf16"].__dlpack__(stream=7)
    loaded["bf16"].__dlpack__(dl_device=(1, 0), stream=None)


@pytest.mark.parametrize("name", ["f4", "f6_e2m3", "f6_e3m2"])
def test_packed_types_have_no_dlpack_export(loaded, name):
    with pytest.raises(BufferError, match="packed"):
        loaded[name].__dlpack__()
