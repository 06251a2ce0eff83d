"""stload.integrations.vllm / .sglang / .fastdeploy: the engines' call shapes, exactly.

The signatures are compared with the engines' (as written in each module's docstring); the
weights come out as the engine's tensor type with the files' bytes. Loading into torch
parameters needs torch (skipped without it); FastDeploy's paddle tensors need paddle, and are
also checked through a torch-backed stand-in paddle module.
"""

from __future__ import annotations

import inspect
import json
import sys
from types import SimpleNamespace

import pytest

import stload
from helpers import cli_hashes, python_hashes, shard_files
from st_writer import write_safetensors
from stload.integrations import fastdeploy, sglang, vllm

REAL_DEFAULT_FRAMEWORK = True  # the engines' functions pick their framework themselves

P = inspect.Parameter
EMPTY = P.empty
# (module, function) -> [(name, default)], every parameter positional-or-keyword, as in the engine.
SIGNATURES = {
    (vllm, "safetensors_weights_iterator"): [
        ("hf_weights_files", EMPTY), ("use_tqdm_on_load", EMPTY),
        ("safetensors_load_strategy", "lazy"), ("local_expert_ids", None)],
    (vllm, "multi_thread_safetensors_weights_iterator"): [
        ("hf_weights_files", EMPTY), ("use_tqdm_on_load", EMPTY), ("max_workers", 4)],
    (sglang, "safetensors_weights_iterator"): [
        ("hf_weights_files", EMPTY), ("disable_mmap", False), ("prefetch", False),
        ("prefetch_num_threads", 4), ("drop_cache_after_load", False)],
    (sglang, "multi_thread_safetensors_weights_iterator"): [
        ("hf_weights_files", EMPTY), ("max_workers", EMPTY), ("disable_mmap", False),
        ("drop_cache_after_load", False)],
    (fastdeploy, "get_weight_iterator"): [("model_path", EMPTY), ("load_config", None)],
    (fastdeploy, "safetensors_weights_iterator"): [("safe_tensor_list", EMPTY)],
}


@pytest.mark.parametrize("module, function", SIGNATURES,
                         ids=[f"{m.__name__.rsplit('.', 1)[1]}.{f}" for m, f in SIGNATURES])
def test_signatures_are_the_engines(module, function):
    params = list(inspect.signature(getattr(module, function)).parameters.values())
    assert [(p.name, p.default) for p in params] == SIGNATURES[(module, function)]
    assert all(p.kind is P.POSITIONAL_OR_KEYWORD for p in params)
    assert function in module.__all__


def test_importing_the_integrations_imports_no_engine_and_no_framework():
    import subprocess

    code = ("import sys, stload.integrations.vllm, stload.integrations.sglang, "
            "stload.integrations.fastdeploy\n"
            "print(sorted(m for m in ('torch', 'paddle', 'vllm', 'sglang', 'fastdeploy') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("call", [
    lambda f: vllm.safetensors_weights_iterator(f),  # use_tqdm_on_load is required
    lambda f: vllm.safetensors_weights_iterator(f, True, disable_mmap=True),
    lambda f: vllm.multi_thread_safetensors_weights_iterator(f, True, 4, False),
    lambda f: vllm.multi_thread_safetensors_weights_iterator(f, True, max_worker=4),
    lambda f: sglang.safetensors_weights_iterator(f, is_all_weights_sharded=True),
    lambda f: sglang.safetensors_weights_iterator(f, decryption_key="k"),
    lambda f: sglang.multi_thread_safetensors_weights_iterator(f),  # max_workers is required
    lambda f: sglang.multi_thread_safetensors_weights_iterator(f, 4, use_tqdm_on_load=True),
    lambda f: fastdeploy.get_weight_iterator(f[0], None, None),
    lambda f: fastdeploy.get_weight_iterator(f[0], framework="pt"),
    lambda f: fastdeploy.safetensors_weights_iterator(f, load_config=None),
], ids=["vllm-missing-tqdm", "vllm-disable_mmap", "vllm-mt-extra-positional", "vllm-mt-typo",
        "sglang-is_all_weights_sharded", "sglang-decryption_key", "sglang-mt-missing-workers",
        "sglang-mt-use_tqdm", "fastdeploy-extra-positional", "fastdeploy-framework",
        "fastdeploy-st-load_config"])
def test_arguments_the_engine_does_not_take_are_type_errors(llama, call):
    with pytest.raises(TypeError):
        call(shard_files(llama))


# --- torch engines -----------------------------------------------------------------------------

def into_parameters(torch, pairs) -> dict:
    """The engine pattern: allocate each parameter, then param.copy_(loaded_weight)."""
    params = {}
    for name, w in pairs:
        assert isinstance(w, torch.Tensor), type(w)
        assert w.device.type == "cpu"
        param = torch.empty(w.shape, dtype=w.dtype)
        param.copy_(w)
        params[name] = param
    return params


VLLM_CALLS = {
    "st-positional": lambda f: vllm.safetensors_weights_iterator(f, False),
    "st-lazy": lambda f: vllm.safetensors_weights_iterator(f, True, "lazy"),
    "st-eager": lambda f: vllm.safetensors_weights_iterator(
        f, use_tqdm_on_load=True, safetensors_load_strategy="eager"),
    "st-prefetch": lambda f: vllm.safetensors_weights_iterator(f, True, "prefetch"),
    "st-unknown-strategy-is-lazy": lambda f: vllm.safetensors_weights_iterator(f, True, "other"),
    "mt-default": lambda f: vllm.multi_thread_safetensors_weights_iterator(f, True),
    "mt-workers": lambda f: vllm.multi_thread_safetensors_weights_iterator(
        hf_weights_files=f, use_tqdm_on_load=False, max_workers=8),
}
SGLANG_CALLS = {
    "st-default": lambda f: sglang.safetensors_weights_iterator(f),
    "st-no-mmap": lambda f: sglang.safetensors_weights_iterator(f, True),
    "st-prefetch": lambda f: sglang.safetensors_weights_iterator(
        f, prefetch=True, prefetch_num_threads=3),
    "st-drop-cache": lambda f: sglang.safetensors_weights_iterator(
        f, disable_mmap=False, drop_cache_after_load=True),
    "mt": lambda f: sglang.multi_thread_safetensors_weights_iterator(f, 4),
    "mt-no-mmap-drop": lambda f: sglang.multi_thread_safetensors_weights_iterator(
        f, max_workers=2, disable_mmap=True, drop_cache_after_load=True),
}


@pytest.mark.parametrize("preset", ["llama", "deepseek"])
@pytest.mark.parametrize("engine, call", [("vllm", c) for c in VLLM_CALLS] +
                         [("sglang", c) for c in SGLANG_CALLS])
def test_presets_load_into_torch_parameters(torch, request, cli, preset, engine, call):
    checkpoint = request.getfixturevalue(preset)
    files = shard_files(checkpoint)
    f = (VLLM_CALLS if engine == "vllm" else SGLANG_CALLS)[call]
    if preset == "deepseek" and not hasattr(torch, "float8_e4m3fn"):
        with pytest.raises(TypeError, match="F8_E4M3 has no torch dtype"):
            into_parameters(torch, f(files))
        return
    params = into_parameters(torch, f(files))
    assert python_hashes(params.items()) == cli_hashes(cli, checkpoint)


def test_read_paths(torch, llama):
    files = shard_files(llama)
    cases = [(vllm.safetensors_weights_iterator(files, True), "mmap", 1),
             (vllm.safetensors_weights_iterator(files, True, "eager"), "pread", 1),
             (vllm.multi_thread_safetensors_weights_iterator(files, True, 3), "mmap", 3),
             (sglang.safetensors_weights_iterator(files, True), "pread", 1),
             (sglang.safetensors_weights_iterator(files, prefetch=True, prefetch_num_threads=3),
              "mmap", 3),
             (sglang.safetensors_weights_iterator(files, True, True, 3), "pread", 1),
             (sglang.multi_thread_safetensors_weights_iterator(files, 2, True), "pread", 2)]
    for it, read_path, threads in cases:
        with it:
            for _ in it:
                pass
            assert it.stats["read_path"] == read_path
            assert it.stats["threads"] <= threads


def test_single_thread_iterators_go_file_by_file_in_data_order(torch, llama):
    files = shard_files(llama)
    expected = [t["name"] for f in files for t in stload.inspect(f)["tensors"]]
    for it in (vllm.safetensors_weights_iterator(files, True),
               sglang.safetensors_weights_iterator(files),
               sglang.safetensors_weights_iterator(files, prefetch=True)):
        assert [name for name, _ in it] == expected


def test_vllm_torchao_strategy_is_unsupported(llama):
    with pytest.raises(stload.UnsupportedError, match="torchao") as raised:
        vllm.safetensors_weights_iterator(shard_files(llama), True, "torchao")
    assert isinstance(raised.value, ValueError) and raised.value.code == "unsupported"


def test_vllm_local_expert_ids_skip_other_experts(torch, tmp_path):
    tensors = {name: ("F32", [1], bytes(4)) for name in (
        "model.layers.0.mlp.experts.0.w1.weight", "model.layers.0.mlp.experts.1.w1.weight",
        "model.layers.0.mlp.experts.12.w1.weight", "model.layers.0.mlp.gate.weight",
        "model.embed_tokens.weight")}
    path = write_safetensors(tmp_path / "moe.safetensors", tensors)
    names = {n for n, _ in vllm.safetensors_weights_iterator([path], False, "lazy", {1, 12})}
    assert names == {"model.layers.0.mlp.experts.1.w1.weight",
                     "model.layers.0.mlp.experts.12.w1.weight",
                     "model.layers.0.mlp.gate.weight", "model.embed_tokens.weight"}
    assert len(list(vllm.safetensors_weights_iterator([path], False))) == len(tensors)


@pytest.mark.parametrize("call", [
    lambda f: vllm.multi_thread_safetensors_weights_iterator(f, True, 0),
    lambda f: vllm.multi_thread_safetensors_weights_iterator(f, True, 2.0),
    lambda f: sglang.multi_thread_safetensors_weights_iterator(f, 0),
    lambda f: sglang.safetensors_weights_iterator(f, prefetch=True, prefetch_num_threads=0),
    lambda f: sglang.safetensors_weights_iterator(f, disable_mmap="yes"),
    lambda f: sglang.safetensors_weights_iterator(f, drop_cache_after_load=1),
])
def test_bad_values_are_value_errors(llama, call):
    with pytest.raises(ValueError):
        call(shard_files(llama))


def test_missing_files_are_file_not_found_errors(torch, tmp_path):
    missing = [str(tmp_path / "missing.safetensors")]
    for call in (lambda: vllm.safetensors_weights_iterator(missing, True),
                 lambda: sglang.multi_thread_safetensors_weights_iterator(missing, 2)):
        with pytest.raises(FileNotFoundError):
            call()


def test_torch_engines_without_torch_are_import_errors(llama):
    import subprocess

    code = f"""
import sys
sys.modules['torch'] = None
from stload.integrations import vllm
try:
    vllm.safetensors_weights_iterator({shard_files(llama)!r}, True)
except ImportError as e:
    print(e)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert 'framework="pt" needs torch' in done.stdout


# --- FastDeploy --------------------------------------------------------------------------------

class EngineLoadConfig:
    """Like FastDeploy's (and vLLM's, SGLang's) LoadConfig: model_loader_extra_config."""

    def __init__(self, extra):
        self.model_loader_extra_config = extra
        self.load_format = "default"


@pytest.mark.parametrize("load_config, expected", [
    (None, {}),
    ({"enable_multithread_load": True, "num_threads": 3}, {"num_threads": 3}),
    (stload.LoadConfig(num_threads=5, disable_mmap=True), {"num_threads": 5, "disable_mmap": True}),
    (EngineLoadConfig({"enable_multithread_load": True, "num_threads": 6}), {"num_threads": 6}),
    (EngineLoadConfig(json.dumps({"num_threads": 7, "disable_mmap": False})),
     {"num_threads": 7, "disable_mmap": False}),
    (EngineLoadConfig(None), {}),
    (EngineLoadConfig(""), {}),
    (SimpleNamespace(model_loader_extra_config=stload.LoadConfig(order="file")), {"order": "file"}),
], ids=["none", "dict", "LoadConfig", "engine-dict", "engine-json", "engine-none", "engine-empty",
        "engine-LoadConfig"])
def test_fastdeploy_load_config_forms(load_config, expected):
    config = fastdeploy.extra_config(load_config).to_dict()
    default = stload.LoadConfig().to_dict()
    for k, v in default.items():
        assert config[k] == expected.get(k, v) or k == "enable_multithread_load", k


@pytest.mark.parametrize("load_config, error, match", [
    (42, TypeError, "load_config must be None, a dict"),
    ("num_threads=4", TypeError, "load_config must be None, a dict"),
    (EngineLoadConfig(42), TypeError, "model_loader_extra_config must be a dict"),
    (EngineLoadConfig({"threads": 4}), ValueError, "threads"),
    ({"num_threads": 0}, ValueError, "num_threads"),
])
def test_fastdeploy_bad_load_configs(llama, load_config, error, match):
    with pytest.raises(error, match=match):
        fastdeploy.get_weight_iterator(str(llama), load_config)


@pytest.mark.parametrize("call", [
    lambda ckpt: fastdeploy.get_weight_iterator(str(ckpt)),
    lambda ckpt: fastdeploy.get_weight_iterator(
        ckpt, EngineLoadConfig({"enable_multithread_load": True, "num_threads": 4})),
    lambda ckpt: fastdeploy.get_weight_iterator(ckpt / "model.safetensors.index.json",
                                                {"disable_mmap": True}),
    lambda ckpt: fastdeploy.safetensors_weights_iterator(shard_files(ckpt)),
], ids=["default", "engine-config", "index-dict", "safetensors_weights_iterator"])
def test_fastdeploy_yields_paddle_tensors_with_the_files_bytes(stand_in_paddle, torch, llama,
                                                               cli, call):
    # The stand-in's from_dlpack is torch's, so the tensors are torch's here; with paddle,
    # paddle's (test_fastdeploy_with_real_paddle).
    assert python_hashes(call(llama)) == cli_hashes(cli, llama)


def test_fastdeploy_without_paddle_is_an_import_error(llama):
    try:
        import paddle  # noqa: F401
        pytest.skip("paddle is installed")
    except ImportError:
        pass
    with pytest.raises(ImportError, match="paddlepaddle"):
        fastdeploy.get_weight_iterator(str(llama))


def test_fastdeploy_with_real_paddle(llama, cli):
    paddle = pytest.importorskip("paddle", reason="paddle is not installed (PyPI: paddlepaddle)")
    import hashlib

    hashes = {}
    for name, t in fastdeploy.get_weight_iterator(str(llama)):
        assert isinstance(t, paddle.Tensor)
        hashes[name] = hashlib.sha256(t.view(paddle.uint8).numpy().tobytes()).hexdigest()
    assert hashes == cli_hashes(cli, llama)
