"""Fixtures: the stload CLI and small checkpoints it generates (once per test session).

Run by ctest (test `python_tests`), which sets PYTHONPATH to the built package and STLOAD_CLI to
the built `stload` binary. By hand: PYTHONPATH=BUILD/python STLOAD_CLI=BUILD/tools/stload
python3 -m pytest tests/python
"""

from __future__ import annotations

import os
import shutil
import sys
import types
from pathlib import Path

import pytest

import stload
from helpers import run_cli


def _cli_path() -> str | None:
    path = os.environ.get("STLOAD_CLI") or shutil.which("stload")
    return os.path.abspath(path) if path and os.access(path, os.X_OK) else None


@pytest.fixture(scope="session")
def cli() -> str:
    """Path of the `stload` binary (STLOAD_CLI), for make-checkpoint and hash parity."""
    path = _cli_path()
    if path is None:
        pytest.skip("the stload CLI was not found: set STLOAD_CLI to BUILD/tools/stload")
    return path


@pytest.fixture(autouse=True)
def stload_values_by_default(request, monkeypatch):
    """The modules about stload's own values (numpy arrays and stload.Tensor: dtypes, DLPack,
    read paths, errors, paths) run with framework="stload" as the default, so that they check
    the same thing with and without torch installed. Modules that set
    ``REAL_DEFAULT_FRAMEWORK = True`` (test_frameworks.py, test_integrations.py) get the real
    default (torch when it can be imported, else numpy) and test it."""
    if not getattr(request.module, "REAL_DEFAULT_FRAMEWORK", False):
        monkeypatch.setattr(stload._frameworks, "_default", "stload")


def make_checkpoint(cli: str, directory: Path, *args: str) -> Path:
    run_cli(cli, "make-checkpoint", str(directory), *args)
    return directory


@pytest.fixture(scope="session")
def llama(cli, tmp_path_factory) -> Path:
    """A Llama-like checkpoint: 3 shards and an index, BF16, about 8 MiB."""
    return make_checkpoint(cli, tmp_path_factory.mktemp("llama") / "ckpt", "--preset", "llama",
                           "--total", "8MiB", "--shards", "3", "--seed", "11")


@pytest.fixture(scope="session")
def deepseek(cli, tmp_path_factory) -> Path:
    """A DeepSeek-V3-like checkpoint: F8_E4M3 weights, F32 scales, BF16 norms; 2 shards, index.

    The preset's smallest (2 decoder layers and the prediction layer, about 18 MiB): 8MiB asks
    for less than that."""
    return make_checkpoint(cli, tmp_path_factory.mktemp("deepseek") / "ckpt", "--preset",
                           "deepseek", "--total", "8MiB", "--shards", "2", "--seed", "12")


@pytest.fixture(scope="session")
def many_small(cli, tmp_path_factory) -> Path:
    """Thousands of 512-byte tensors in 2 shards (read many to a request)."""
    return make_checkpoint(cli, tmp_path_factory.mktemp("small") / "ckpt", "--preset",
                           "many-small", "--total", "1MiB", "--shards", "2", "--seed", "13")


@pytest.fixture(scope="session")
def torch():
    return pytest.importorskip("torch", reason="torch is not installed (Debian: python3-torch)")


@pytest.fixture
def stand_in_paddle(torch, monkeypatch):
    """A ``paddle`` module whose ``utils.dlpack.from_dlpack`` is torch's: checks the capsules
    stload hands paddle (every dtype, no copy, memory kept alive) where paddle is missing."""
    paddle = types.ModuleType("paddle")
    paddle.__version__ = "stand-in"
    utils = types.ModuleType("paddle.utils")
    dlpack = types.ModuleType("paddle.utils.dlpack")
    dlpack.from_dlpack = torch.utils.dlpack.from_dlpack
    paddle.utils, utils.dlpack = utils, dlpack
    monkeypatch.setitem(sys.modules, "paddle", paddle)
    monkeypatch.setitem(sys.modules, "paddle.utils", utils)
    monkeypatch.setitem(sys.modules, "paddle.utils.dlpack", dlpack)
    monkeypatch.setattr(stload._frameworks, "_paddle_converter", None)
    return paddle
