"""Rank-aware loading: every rank's part equals numpy slicing of the full tensor.

The oracle here reads the shards with its own header parser and applies the rules as the issue
states them (split, parts, pad_to, block, expert, pipeline stages), with Python's `re` and numpy:
nothing of stload's C++ selection is reused. The rules of the presets come from `stload rules`
(what is tested is that stload applies them; what they say is checked against vLLM's layers in
test_preset_contents)."""

from __future__ import annotations

import hashlib
import json
import re
import struct
import subprocess
from collections import defaultdict
from pathlib import Path

import numpy
import pytest

import stload
from helpers import raw_bytes, run_cli

ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2,
            "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


class SplitError(Exception):
    pass


def read_full(path: Path) -> dict:
    """{name: (dtype, shape, raw uint8 bytes)} of every shard under `path`."""
    tensors = {}
    for f in sorted(Path(path).glob("*.safetensors")):
        data = f.read_bytes()
        n = struct.unpack("<Q", data[:8])[0]
        header = json.loads(data[8:8 + n])
        header.pop("__metadata__", None)
        for name, h in header.items():
            b, e = h["data_offsets"]
            tensors[name] = (h["dtype"], list(h["shape"]),
                             numpy.frombuffer(data, numpy.uint8, e - b, 8 + n + b))
    return tensors


def layer_of(name: str):
    m = re.search(r"layers\.(\d+)\.", name)
    return int(m.group(1)) if m else None


def stage_counts(layers: int, stages: int, pp_layers=None) -> list[int]:
    if pp_layers:
        return list(pp_layers)
    k, rem = divmod(layers, stages)
    return [k + (1 if rem and stages - 1 - rem <= s <= stages - 2 else 0) for s in range(stages)]


def owned(n: int, size: int, rank: int) -> range:
    b, rem = divmod(n, size)
    begin = rank * b + min(rank, rem)
    return range(begin, begin + b + (1 if rank < rem else 0))


def split_range(rule: dict, n: int, w: int, r: int):
    if "parts" in rule:
        k = rule["parts"]
        if n % k:
            raise SplitError("parts")
        unit = n // k
        if w <= k:
            if k % w:
                raise SplitError("parts/w")
            return r * k // w * unit, (r + 1) * k // w * unit
        if w % k:
            raise SplitError("w/parts")
        u = r // (w // k)
        return u * unit, (u + 1) * unit
    if "pad_to" in rule:
        m = rule["pad_to"]
        p = m * -(-n // (m * w))
        return min(r * p, n), min((r + 1) * p, n)
    if n % w:
        raise SplitError("uneven")
    return r * n // w, (r + 1) * n // w


def oracle(tensors: dict, rules: dict, w=1, r=0, e=None, q=0, p=1, s=0, layers=None):
    """{name: the part's bytes} this rank gets, or SplitError."""
    compiled = [(re.compile(x["match"]), x) for x in rules["rules"]]
    decided, ids = {}, defaultdict(set)
    for name in tensors:
        for k, (rx, rule) in enumerate(compiled):
            m = rx.fullmatch(name)
            if m:
                decided[name] = (k, m)
                if "expert" in rule:
                    ids[k].add(int(m.group(rule["expert"])))
                break
    if layers is None:
        layers = 1 + max((layer_of(n) for n in tensors if layer_of(n) is not None), default=-1)
    counts = stage_counts(layers, p, rules.get("pp_layers"))
    begin = sum(counts[:s])
    end = begin + counts[s] if s < p - 1 else float("inf")
    first = [re.compile(x) for x in rules.get("first_stage", [])]
    last = [re.compile(x) for x in rules.get("last_stage", [])]
    out = {}
    for name, (dtype, shape, raw) in tensors.items():
        if p > 1:
            if any(x.fullmatch(name) for x in first):
                keep = s == 0
            elif any(x.fullmatch(name) for x in last):
                keep = s == p - 1
            else:
                layer = layer_of(name)
                keep = layer is None or begin <= layer < end
            if not keep:
                continue
        if name not in decided:
            if rules.get("default") == "error":
                raise SplitError("unmatched")
            out[name] = raw.tobytes()
            continue
        k, m = decided[name]
        rule = rules["rules"][k]
        if rule.get("skip"):
            continue
        if "expert" in rule and e is not None:
            n_experts = rule.get("num_experts", len(ids[k]))
            if int(m.group(rule["expert"])) in owned(n_experts, e, q):
                out[name] = raw.tobytes()
            continue
        if "split" not in rule:
            out[name] = raw.tobytes()
            continue
        d = rule["split"]
        if d >= len(shape):
            raise SplitError("dim")
        lo, hi = split_range(rule, shape[d], w, r)
        if "block" in rule and any(c % rule["block"] and c != shape[d] for c in (lo, hi)):
            raise SplitError("block")
        item = ITEMSIZE[dtype]
        array = raw.reshape(shape[:-1] + [shape[-1] * item])
        index = [slice(None)] * len(shape)
        index[d] = slice(lo * item, hi * item) if d == len(shape) - 1 else slice(lo, hi)
        out[name] = numpy.ascontiguousarray(array[tuple(index)]).tobytes()
    return out


def cli_rank_hashes(cli: str, path: Path, *flags: str) -> dict:
    out = run_cli(cli, "hash", str(path), "--no-progress", *flags)
    return {line.split("  ", 1)[1]: line.split("  ", 1)[0] for line in out.splitlines()}


def sha(parts: dict) -> dict:
    return {name: hashlib.sha256(b).hexdigest() for name, b in parts.items()}


def preset_rules(cli: str, preset: str, path: Path) -> dict:
    return json.loads(run_cli(cli, "rules", preset, str(path)))


@pytest.fixture(scope="module")
def llama_full(llama):
    return read_full(llama)


@pytest.fixture(scope="module")
def deepseek_full(deepseek):
    return read_full(deepseek)


@pytest.mark.parametrize("w", [1, 2, 4, 8])
def test_llama_preset_every_rank_equals_the_oracle(cli, llama, llama_full, w):
    rules = preset_rules(cli, "llama", llama)
    for r in range(w):
        expected = sha(oracle(llama_full, rules, w, r))
        got = cli_rank_hashes(cli, llama, "--rules", "llama", "--tp-size", str(w),
                              "--tp-rank", str(r))
        assert got == expected, f"W={w} rank {r}"


@pytest.mark.parametrize("w,e", [(1, None), (2, None), (4, None), (8, None), (8, 8), (4, 2),
                                 (2, 1)])
def test_deepseek_preset_every_rank_equals_the_oracle(cli, deepseek, deepseek_full, w, e):
    rules = preset_rules(cli, "deepseek-v3", deepseek)
    ep_ranks = 1 if e is None else e
    for r in range(w):
        for q in range(ep_ranks):
            expected = sha(oracle(deepseek_full, rules, w, r, e, q))
            flags = ["--rules", "deepseek-v3", "--tp-size", str(w), "--tp-rank", str(r)]
            if e is not None:
                flags += ["--ep-size", str(e), "--ep-rank", str(q)]
            assert cli_rank_hashes(cli, deepseek, *flags) == expected, f"W={w} r={r} E={e} q={q}"


def test_deepseek_preset_skips_the_mtp_layer_and_owns_experts(cli, deepseek):
    config = json.loads((deepseek / "config.json").read_text())
    mtp = f"model.layers.{config['num_hidden_layers']}."
    got = cli_rank_hashes(cli, deepseek, "--rules", "deepseek-v3", "--tp-size", "8",
                          "--tp-rank", "3", "--ep-size", "8", "--ep-rank", "3")
    assert got and not any(name.startswith(mtp) for name in got)
    experts = {int(m.group(1)) for name in got
               if (m := re.search(r"\.experts\.(\d+)\.", name))}
    n = config["n_routed_experts"]
    assert experts == set(owned(n, 8, 3)) and len(experts) == n // 8


@pytest.mark.parametrize("p,w", [(2, 1), (3, 2), (4, 1)])
def test_pipeline_stages_equal_the_oracle(cli, llama, llama_full, p, w):
    rules = preset_rules(cli, "llama", llama)
    layers = json.loads((llama / "config.json").read_text())["num_hidden_layers"]
    seen = set()
    for s in range(p):
        for r in range(w):
            expected = sha(oracle(llama_full, rules, w, r, p=p, s=s, layers=layers))
            got = cli_rank_hashes(cli, llama, "--rules", "llama", "--tp-size", str(w),
                                  "--tp-rank", str(r), "--pp-size", str(p), "--pp-rank", str(s))
            assert got == expected, f"P={p} stage {s} W={w} rank {r}"
            seen |= set(got)
    assert seen == set(llama_full)  # the stages together hold every tensor
    first = cli_rank_hashes(cli, llama, "--rules", "llama", "--pp-size", str(p), "--pp-rank", "0")
    assert "model.embed_tokens.weight" in first and "lm_head.weight" not in first


HAND_RULES = {
    "rules": [
        {"match": r"model\.layers\.0\.self_attn\.k_proj\.weight", "split": 0, "parts": 2},
        {"match": r"model\.layers\.1\.self_attn\.k_proj\.weight", "split": 0, "parts": 8},
        {"match": r"model\.layers\.\d+\.self_attn\.o_proj\.weight", "split": 1},
        {"match": r"model\.layers\.\d+\.mlp\.down_proj\.weight", "split": 1},
        {"match": r"model\.embed_tokens\.weight", "split": 0, "pad_to": 4096},
        {"match": r".*layernorm\.weight", "skip": True},
        {"match": r"model\.layers\.(\d+)\.mlp\.up_proj\.weight", "expert": 1, "split": 0},
        {"match": r".*", "replicate": True},
    ],
    "default": "error",
}


@pytest.mark.parametrize("w", [1, 2, 4, 8])
@pytest.mark.parametrize("e", [None, 3])
def test_hand_written_rules_equal_the_oracle(cli, llama, llama_full, tmp_path, w, e):
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(HAND_RULES))
    for r in range(w):
        for q in range(1 if e is None else e):
            expected = sha(oracle(llama_full, HAND_RULES, w, r, e, q))
            flags = ["--rules", str(path), "--tp-size", str(w), "--tp-rank", str(r)]
            if e is not None:
                flags += ["--ep-size", str(e), "--ep-rank", str(q)]
            got = cli_rank_hashes(cli, llama, *flags)
            assert got == expected, f"W={w} r={r} E={e} q={q}"
            if w == 8 and r == 7:  # pad_to 4096 of a short vocabulary: empty parts
                assert got["model.embed_tokens.weight"] == hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize("flags", [["--no-mmap"], ["--mmap"], ["--direct-io"], ["--io-uring"],
                                   ["--threads", "1"], ["--threads", "4", "--order", "any"],
                                   ["--order", "file", "--memory-limit", "64KiB"]])
def test_every_read_path_gives_the_same_parts(cli, deepseek, deepseek_full, flags):
    rules = preset_rules(cli, "deepseek-v3", deepseek)
    expected = sha(oracle(deepseek_full, rules, 4, 1))
    got = cli_rank_hashes(cli, deepseek, "--rules", "deepseek-v3", "--tp-size", "4",
                          "--tp-rank", "1", *flags)
    assert got == expected


def test_python_entry_points_give_the_rank_part(llama, llama_full, cli, torch):
    rules = preset_rules(cli, "llama", llama)
    keys = {"tp_size": 4, "tp_rank": 2, "rules": "llama"}
    expected = oracle(llama_full, rules, 4, 2)
    loaded = stload.load_file(llama, keys)
    assert {n: raw_bytes(v).tobytes() for n, v in loaded.items()} == expected
    with stload.get_weight_iterator(llama, keys) as it:
        streamed = {n: raw_bytes(v).tobytes() for n, v in it}
        stats = it.stats
    assert streamed == expected
    assert stats["bytes_needed"] == sum(len(b) for b in expected.values())
    assert stats["bytes_planned"] >= stats["bytes_needed"] and stats["reads_planned"] > 0
    assert stats["tensors_skipped"] == len(llama_full) - len(expected)
    name = "model.layers.1.mlp.down_proj.weight"
    with stload.safe_open(llama, framework="pt", load_config=keys) as f:
        assert set(f.keys()) == set(expected)
        assert raw_bytes(f.get_tensor(name)).tobytes() == expected[name]
    target = numpy.empty(len(expected[name]), numpy.uint8)
    stload.load_into(llama, {name: target}, keys)
    assert target.tobytes() == expected[name]
    config = stload.LoadConfig(**keys)
    assert (config.tp_size, config.tp_rank, config.rules, config.ep_size) == (4, 2, "llama", None)
    assert stload.LoadConfig(**config.to_dict()) == config


def run_status(cli: str, *args: str):
    done = subprocess.run([cli, *args], capture_output=True, text=True)
    return done.returncode, done.stderr


@pytest.mark.parametrize("args,code,text", [
    (["--tp-size", "2"], 2, "needs rules"),
    (["--tp-size", "2", "--tp-rank", "2", "--rules", "llama"], 2, "tp_rank"),
    (["--tp-size", "0", "--rules", "llama"], 2, "tp_size"),
    (["--rules", "no-such-preset"], 2, "neither a preset"),
    (["--tp-size", "3", "--rules", "llama"], 1, "tensor '"),
    (["--pp-size", "2", "--rules", '{"rules": [], "pp_layers": [1]}'], 2, "pp_layers"),
    (["--rules", '{"rules": [{"match": "("}]}'], 2, "rule 1"),
    (["--rules", '{"rules": [{"match": "x", "split": 0, "skip": true}]}'], 2, "two actions"),
    (["--rules", '{"rules": [], "default": "error"}'], 1, "no rule matches"),
])
def test_bad_rank_flags_and_rules(cli, llama, args, code, text):
    for command in ("hash", "load", "inspect", "plan"):
        extra = ["--no-progress"] if command in ("hash", "load") else []
        got, stderr = run_status(cli, command, str(llama), *extra, *args)
        assert got == code and text in stderr, (command, args, stderr)
        if code == 1:
            assert re.match(r"stload: error: model-\d+-of-\d+\.safetensors: tensor '", stderr)


def test_preset_needs_config_json(cli, llama, tmp_path):
    for f in llama.glob("*.safetensors"):
        (tmp_path / f.name).write_bytes(f.read_bytes())
    got, stderr = run_status(cli, "hash", str(tmp_path / "model-00001-of-00003.safetensors"),
                             "--rules", "llama", "--no-progress")
    assert got == 2 and "config.json" in stderr


def test_plan_all_ranks_covers_every_needed_byte(cli, deepseek, deepseek_full):
    rules = preset_rules(cli, "deepseek-v3", deepseek)
    plan = json.loads(run_cli(cli, "plan", str(deepseek), "--rules", "deepseek-v3",
                              "--tp-size", "8", "--all-ranks", "--json"))
    assert plan["union"]["needed_bytes_no_rank_covers"] == 0
    for rank in plan["ranks"]:
        r = rank["tp"]["rank"]
        needed = sum(len(b) for b in oracle(deepseek_full, rules, 8, r).values())
        assert rank["bytes_needed"] == needed
        assert rank["bytes_read"] >= needed
    assert plan["union"]["bytes_read_by_all_ranks"] == sum(x["bytes_read"] for x in plan["ranks"])


def test_llama_tp8_reads_its_parts_plus_replicated_plus_reported_over_read(cli, llama,
                                                                           llama_full):
    rules = preset_rules(cli, "llama", llama)
    for r in range(8):
        plan = json.loads(run_cli(cli, "plan", str(llama), "--rules", "llama", "--tp-size", "8",
                                  "--tp-rank", str(r), "--json"))
        needed = sum(len(b) for b in oracle(llama_full, rules, 8, r).values())
        totals = plan["totals"]
        assert totals["bytes_needed"] == needed
        assert totals["bytes_read"] == needed + totals["over_read_bytes"]


def test_preset_contents(cli, llama, deepseek):
    """What the presets say, against vLLM's parallel layers."""
    def rule_for(rules, name):
        return next(x for x in rules["rules"] if re.fullmatch(x["match"], name))

    llama_rules = preset_rules(cli, "llama", llama)
    kv = json.loads((llama / "config.json").read_text())["num_key_value_heads"]
    assert rule_for(llama_rules, "model.layers.3.self_attn.k_proj.weight") == {
        "match": rule_for(llama_rules, "model.layers.3.self_attn.k_proj.weight")["match"],
        "split": 0, "parts": kv}
    assert rule_for(llama_rules, "model.layers.3.self_attn.o_proj.weight")["split"] == 1
    assert rule_for(llama_rules, "model.layers.3.mlp.down_proj.weight")["split"] == 1
    assert rule_for(llama_rules, "lm_head.weight")["pad_to"] == 64
    assert rule_for(llama_rules, "model.norm.weight").get("replicate")

    ds = preset_rules(cli, "deepseek-v3", deepseek)
    assert rule_for(ds, "model.layers.1.self_attn.q_a_proj.weight").get("replicate")
    assert rule_for(ds, "model.layers.1.self_attn.kv_b_proj.weight")["split"] == 0
    assert rule_for(ds, "model.layers.1.self_attn.o_proj.weight_scale_inv")["split"] == 1
    assert rule_for(ds, "model.layers.1.mlp.experts.5.down_proj.weight")["expert"] == 1
    assert rule_for(ds, "model.layers.1.mlp.gate.e_score_correction_bias").get("replicate")
    assert rule_for(ds, "model.layers.1.mlp.shared_experts.up_proj.weight")["block"] == 128
