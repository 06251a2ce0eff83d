"""Helpers shared by the tests: running the CLI, hashing what Python yields."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import numpy

import stload


def run_cli(cli: str, *args: str) -> str:
    """Runs the CLI and returns its stdout; fails the test with stderr on a non-zero exit."""
    done = subprocess.run([cli, *args], capture_output=True, text=True)
    assert done.returncode == 0, f"stload {' '.join(args)}: {done.stderr}"
    return done.stdout


def shard_files(checkpoint: Path) -> list[str]:
    """The checkpoint's .safetensors files, sorted by name."""
    return sorted(str(p) for p in checkpoint.glob("*.safetensors"))


def cli_hashes(cli: str, path: Path | str) -> dict[str, str]:
    """{name: sha256 hex} from `stload hash`."""
    out = run_cli(cli, "hash", str(path), "--no-progress")
    hashes = {}
    for line in out.splitlines():
        digest, name = line.split("  ", 1)
        hashes[name] = digest
    return hashes


def is_torch_tensor(value) -> bool:
    return type(value).__module__.split(".")[0] == "torch"  # without importing torch


def raw_bytes(value) -> numpy.ndarray:
    """The weight's bytes as a flat uint8 array, sharing memory with it: a stload.Tensor (its raw
    view), a numpy array or a torch tensor (any dtype: reinterpreted as uint8 without a copy)."""
    if is_torch_tensor(value):
        import torch

        flat = value.reshape(-1)
        if flat.dtype != torch.uint8:
            flat = flat.view(torch.uint8)
        return flat.numpy()
    array = value.numpy() if isinstance(value, stload.Tensor) else value
    return array.reshape(-1).view(numpy.uint8)


def python_hashes(pairs) -> dict[str, str]:
    """{name: sha256 hex} of every (name, array) pair; fails on a repeated name."""
    hashes = {}
    for name, value in pairs:
        assert name not in hashes, f"{name} yielded twice"
        hashes[name] = hashlib.sha256(raw_bytes(value)).hexdigest()
    return hashes


def thread_count() -> int:
    """OS threads of this process (stload's readers are not Python threads)."""
    return len(os.listdir("/proc/self/task"))
