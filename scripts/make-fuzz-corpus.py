#!/usr/bin/env python3
"""Writes the seed corpus of the libFuzzer targets (fuzz/), so that no binary file is committed.

    scripts/make-fuzz-corpus.py OUT_DIR

OUT_DIR/header/ gets safetensors files (valid ones of every dtype and shape kind, tensors across
4 KiB chunk boundaries, and near misses of each rule), OUT_DIR/load/ the same files in
fuzz_load's two input forms (see load_forms); OUT_DIR/index/ gets model.safetensors.index.json texts for
the fuzzing directory of fuzz/fuzz_index.cc (shards a.safetensors: x, y; b.safetensors: z).
Deterministic: the same files every run.
"""
import json
import os
import random
import struct
import sys

DTYPES = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32,
    "F64": 64, "I64": 64, "U64": 64, "C64": 64,
}


def nbytes(dtype, shape):
    n = 1
    for d in shape:
        n *= d
    return n * DTYPES[dtype] // 8


def file_bytes(header_text, data, pad=True):
    """8-byte length, the header (space-padded to a multiple of 8 like the writers), the data."""
    text = header_text.encode("utf-8") if isinstance(header_text, str) else header_text
    if pad:
        text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + data


def safetensors(tensors, metadata=None, order=None, pad=True, seed=0):
    """tensors: [(name, dtype, shape)], laid out back to back in list order; `order` permutes the
    header's entries (the data layout stays). Data bytes are random but deterministic."""
    rng = random.Random(seed)
    entries = []
    offset = 0
    for name, dtype, shape in tensors:
        size = nbytes(dtype, shape)
        entries.append((name, {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}))
        offset += size
    if order is not None:
        entries = [entries[i] for i in order]
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    header.update(entries)
    data = bytes(rng.getrandbits(8) for _ in range(offset))
    return file_bytes(json.dumps(header, separators=(",", ":")), data, pad)


def raw(header_text, data_len, pad=False):
    return file_bytes(header_text, bytes((i * 31 + 7) & 0xFF for i in range(data_len)), pad)


def header_seeds():
    seeds = {}
    seeds["empty"] = raw("{}", 0)
    seeds["empty_padded"] = raw("{}", 0, pad=True)
    seeds["one_f32"] = safetensors([("a", "F32", [1])])
    seeds["every_dtype"] = safetensors(
        [("t_" + d, d, [2, 4]) for d in DTYPES], metadata={"format": "pt"})
    seeds["scalar_and_empty"] = safetensors(
        [("s", "F64", []), ("e", "F32", [0]), ("f", "BF16", [3, 0]), ("g", "U8", [5])])
    seeds["sub_byte"] = safetensors([("a", "F4", [2]), ("b", "F6_E2M3", [4]), ("c", "F6_E3M2", [2, 2])])
    seeds["out_of_order"] = safetensors(
        [("first", "U8", [5]), ("second", "I8", [7]), ("third", "F32", [2])], order=[2, 0, 1])
    seeds["metadata_null"] = raw('{"__metadata__":null,"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', 1)
    seeds["whitespace"] = raw(
        ' \t\n\r{ "a" :\n\t{"dtype" : "F32", "shape":[ 1 ],\r\n"data_offsets":[0 , 4]} }\n ', 4)
    seeds["unicode"] = raw(
        '{"caf\\u00e9":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
        '"\\ud83d\\ude00":{"dtype":"U8","shape":[1],"data_offsets":[1,2]},'
        '"\xe6\xa8\xa1":{"dtype":"U8","shape":[1],"data_offsets":[2,3]}}', 3)
    seeds["big_ints"] = raw('{"a":{"dtype":"U8","shape":[0,4294967296,18446744073709551615],'
                            '"data_offsets":[0,0]}}', 0)
    seeds["llama_like"] = safetensors(
        [("model.layers.%d.%s.weight" % (i // 3, p), "BF16", [8, 8])
         for i, p in enumerate(["self_attn.q_proj", "mlp.up_proj", "input_layernorm"] * 4)],
        metadata={"format": "pt", "total": "12"})
    # Near misses, one rule each.
    a = '"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}'
    seeds["bad_gap"] = raw('{"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}', 12)
    seeds["bad_overlap"] = raw('{"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},'
                               '"b":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}}', 8)
    seeds["bad_duplicate"] = raw("{" + a + "," + a + "}", 4)
    seeds["bad_duplicate_metadata_key"] = raw('{"__metadata__":{"x":"1","x":"2"}}', 0)
    seeds["bad_trailing"] = raw("{" + a + "}", 5)
    seeds["bad_size"] = raw('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}', 4)
    seeds["bad_f4_odd"] = raw('{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}', 2)
    seeds["bad_overflow"] = raw('{"a":{"dtype":"U8","shape":[4294967296,4294967296,0],'
                                '"data_offsets":[0,0]}}', 0)
    seeds["bad_negative_zero"] = raw('{"a":{"dtype":"U8","shape":[-0],"data_offsets":[0,0]}}', 0)
    seeds["bad_unknown_key"] = raw('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":0}}', 4)
    seeds["bad_length"] = struct.pack("<Q", 1 << 40) + b"{}"
    seeds["bad_short"] = b"\x02\x00\x00"
    return seeds


def load_seeds():
    """Valid files whose tensors straddle 4 KiB chunk and block boundaries."""
    seeds = {}
    seeds["empty"] = raw("{}", 0)
    seeds["one_small"] = safetensors([("w", "U8", [3])], seed=1)
    seeds["straddle_chunks"] = safetensors(
        [("a", "U8", [4000]), ("b", "F32", [1100]), ("c", "BF16", [3, 700]), ("d", "U8", [1])], seed=2)
    seeds["big_tensor"] = safetensors([("big", "U8", [20000]), ("tail", "I16", [7])], seed=3)
    seeds["many_small"] = safetensors(
        [("model.layers.%d.experts.%d.w" % (i // 8, i % 8), "U8", [37]) for i in range(200)], seed=4)
    seeds["zero_sized_between"] = safetensors(
        [("a", "F32", [1]), ("z1", "U8", [0]), ("z2", "BF16", [3, 0]), ("b", "F32", [1025]),
         ("zend", "I64", [0])], seed=5)
    seeds["natural_names"] = safetensors(
        [("layers.10.w", "U8", [5000]), ("layers.2.w", "U8", [3000]), ("layers.02.w", "U8", [9]),
         ("layers.1.w", "U8", [4096])], order=[3, 1, 0, 2], seed=6)
    seeds["every_dtype"] = safetensors([("t_" + d, d, [8, 32]) for d in DTYPES], seed=7)
    seeds["unpadded_odd_offsets"] = safetensors(
        [("a", "U8", [4097]), ("b", "U8", [4095]), ("c", "U8", [8191])], pad=False, seed=8)
    return seeds


def index_seeds():
    full = {"x": "a.safetensors", "y": "a.safetensors", "z": "b.safetensors"}
    docs = {
        "full": {"metadata": {"total_size": 7}, "weight_map": full},
        "full_reordered": {"weight_map": {"z": "b.safetensors", "y": "a.safetensors", "x": "a.safetensors"}},
        "total_size_wrong": {"metadata": {"total_size": 8}, "weight_map": full},
        "one_shard": {"weight_map": {"z": "b.safetensors"}},
        "missing_tensor": {"weight_map": {"x": "a.safetensors", "z": "b.safetensors"}},
        "wrong_shard": {"weight_map": {"x": "b.safetensors", "y": "a.safetensors", "z": "b.safetensors"}},
        "extra_tensor": {"weight_map": dict(full, w="b.safetensors")},
        "missing_shard": {"weight_map": {"q": "c.safetensors"}},
        "not_safetensors": {"weight_map": {"q": "bad.safetensors"}},
        "directory": {"weight_map": {"q": "sub.safetensors"}},
        "escape": {"weight_map": {"x": "../a.safetensors"}},
        "empty_map": {"weight_map": {}},
        "no_map": {"metadata": {}},
        "other_keys": {"weight_map": full, "format": ["pt", 1, None, {"k": 1.5}]},
    }
    seeds = {k: json.dumps(v, indent=2).encode() for k, v in docs.items()}
    seeds["duplicate_tensor"] = b'{"weight_map":{"x":"a.safetensors","x":"a.safetensors"}}'
    seeds["duplicate_top"] = b'{"weight_map":{},"weight_map":{}}'
    seeds["not_json"] = b'{"weight_map":'
    return seeds


def load_forms(data):
    """fuzz_load's two input forms of one file: b"\\x01" + the file as is, and b"\\x00" + the
    header's text + NUL + the data (the target writes the length and fits the data to the
    header)."""
    forms = {"raw": b"\x01" + data}
    if len(data) >= 8:
        n = struct.unpack("<Q", data[:8])[0]
        text, rest = data[8:8 + n], data[8 + n:]
        if 8 + n <= len(data) and b"\0" not in text:
            forms["split"] = b"\x00" + text + b"\x00" + rest
    return forms


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make-fuzz-corpus.py OUT_DIR")
    out = sys.argv[1]
    def write(target, name, data):
        d = os.path.join(out, target)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "seed_" + name), "wb") as f:
            f.write(data)

    for name, data in index_seeds().items():
        write("index", name, data)
    # Every file goes to both header and load (in both of fuzz_load's input forms).
    files = dict(header_seeds())
    files.update({"load_" + k: v for k, v in load_seeds().items()})
    for name, data in files.items():
        write("header", name, data)
        for form, input_bytes in load_forms(data).items():
            write("load", name + "_" + form, input_bytes)


if __name__ == "__main__":
    main()
