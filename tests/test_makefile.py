"""`make install` branches: keep the user's torch by default, CPU_ONLY=1 pins the CPU wheel and forbids CUDA."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# a stand-in venv python: logs its arguments; `-c "import torch..."` fails when FAKE_NO_TORCH is set,
# `pip list` prints FAKE_PIP_LIST
FAKE_PYTHON = """#!/usr/bin/env bash
echo "$*" >> "$(dirname "$0")/../calls.log"
case "$*" in
  "-c import torch") [ -z "$FAKE_NO_TORCH" ] ;;
  "-m pip list") echo "$FAKE_PIP_LIST" ;;
  *) true ;;
esac
"""

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def _outer_env() -> dict[str, str]:
    """The environment without the install switches of an outer `make` (.ci/run sets CPU_ONLY=1)."""
    return {
        k: v
        for k, v in os.environ.items()
        if k not in ("CPU_ONLY", "HAS_GPU", "VENV", "VENV_FLAGS", "MAKEFLAGS", "MAKELEVEL", "MFLAGS")
    }


def _install(tmp_path: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text(FAKE_PYTHON)
    (venv / "bin" / "python").chmod(0o755)
    proc = subprocess.run(
        ["make", "--no-print-directory", "install", f"VENV={venv}", *args],
        cwd=REPO,
        env={**_outer_env(), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    log = venv / "calls.log"
    return proc, log.read_text().splitlines() if log.is_file() else []


def test_default_keeps_an_importable_torch_and_tolerates_cuda(tmp_path: Path) -> None:
    proc, calls = _install(tmp_path, FAKE_PIP_LIST="nvidia-cublas-cu12 12.4")
    assert proc.returncode == 0, proc.stderr
    assert not any(c.startswith("-m pip install torch") for c in calls)
    assert "-m pip install -e .[dev]" in calls


def test_default_installs_torch_from_the_index_when_missing_on_a_gpu_machine(tmp_path: Path) -> None:
    proc, calls = _install(tmp_path, "HAS_GPU=1", FAKE_NO_TORCH="1")
    assert "-m pip install torch>=2.1,<2.15" in calls
    assert calls.index("-m pip install torch>=2.1,<2.15") < calls.index("-m pip install -e .[dev]")


def test_default_without_a_gpu_installs_the_pinned_wheel_when_missing(tmp_path: Path) -> None:
    proc, calls = _install(tmp_path, "HAS_GPU=", FAKE_NO_TORCH="1")
    assert proc.returncode == 0, proc.stderr
    assert calls.index("-m pip install torch==2.13.0") < calls.index("-m pip install -e .[dev]")


def test_cpu_only_pins_the_cpu_wheel_first(tmp_path: Path) -> None:
    proc, calls = _install(tmp_path, "CPU_ONLY=1", FAKE_PIP_LIST="torch 2.13.0+cpu")
    assert proc.returncode == 0, proc.stderr
    assert calls.index("-m pip install torch==2.13.0") < calls.index("-m pip install -e .[dev]")


def test_cpu_only_fails_when_cuda_packages_appear(tmp_path: Path) -> None:
    proc, _ = _install(tmp_path, "CPU_ONLY=1", FAKE_PIP_LIST="nvidia-cublas-cu12 12.4")
    assert (
        proc.returncode != 0 and "CUDA (nvidia-*) packages were installed with CPU_ONLY=1" in proc.stdout + proc.stderr
    )


def test_ci_runs_the_cpu_only_install() -> None:
    assert "CPU_ONLY=1 make test" in (REPO / ".ci" / "run").read_text()
