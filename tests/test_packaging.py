"""rspnet as an installable package: configs and genotypes ship as package data, any cwd works."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import tomllib
from omegaconf import OmegaConf

from rspnet.errors import ConfigError
from rspnet.resources import config_dir, genotype_path, shipped_genotypes

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "0"}


# load_model("zoo:camvid") in the installed package: its weights file, then kind, trained, classes, logits shape
ZOO_CAMVID = """
import torch, rspnet
from rspnet.api import zoo_entries, zoo_weights
m = rspnet.load_model("zoo:camvid")
print(zoo_weights(zoo_entries()["camvid"]))
print(m.kind, m.trained, m.num_classes, m.classes[0], tuple(m(torch.zeros(1, 3, 64, 96)).shape))
"""


def _setuptools() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_subpackage_and_the_data_are_declared() -> None:
    st = _setuptools()
    found = {".".join(p.parent.relative_to(REPO / "src").parts) for p in (REPO / "src" / "rspnet").rglob("__init__.py")}
    assert found <= set(st["packages"]), f"add to [tool.setuptools] packages: {sorted(found - set(st['packages']))}"
    dirs = st["package-dir"]
    assert dirs["rspnet.conf"] == "conf" and dirs["rspnet.genotypes"] == "experiments/genotypes"
    data = st["package-data"]
    assert "py.typed" in data["rspnet"] and (REPO / "src" / "rspnet" / "py.typed").is_file()
    conf = {p for pattern in data["rspnet.conf"] for p in (REPO / "conf").glob(pattern)}
    assert REPO / "conf" / "config.yaml" in conf and REPO / "conf" / "experiment" / "rsp_ablation.yaml" in conf
    assert REPO / "conf" / "debug" / "limit.yaml" in conf
    genotypes = {p for pattern in data["rspnet.genotypes"] for p in (REPO / "experiments" / "genotypes").glob(pattern)}
    assert REPO / "experiments" / "genotypes" / "paper_like.json" in genotypes
    assert dirs["rspnet.model_zoo"] == "experiments/model_zoo"  # zoo.yaml and the published weights
    zoo = {p for pattern in data["rspnet.model_zoo"] for p in (REPO / "experiments" / "model_zoo").glob(pattern)}
    assert {REPO / "experiments" / "model_zoo" / f for f in ("zoo.yaml", "camvid.safetensors")} <= zoo


def test_resources_find_the_configs_and_the_shipped_genotypes() -> None:
    assert (config_dir() / "config.yaml").is_file() and (config_dir() / "debug" / "limit.yaml").is_file()
    assert "paper_like" in shipped_genotypes()
    assert json.loads(genotype_path("paper_like").read_text())["provenance"] == "preset"
    cfg = OmegaConf.create({"genotype": "${rspnet.genotype:paper_like}"})
    assert cfg.genotype == str(genotype_path("paper_like"))
    assert "camvid_tiny_s0" in shipped_genotypes() and "camvid_tiny_s0_macro" not in shipped_genotypes()  # a macro
    with pytest.raises(ConfigError, match="unknown shipped genotype 'nope'.*shipped: .*paper_like"):
        genotype_path("nope")


def test_users_add_their_own_config_dir(tmp_path: Path) -> None:
    mine = tmp_path / "myconf" / "experiment"
    mine.mkdir(parents=True)
    (mine / "mine.yaml").write_text("# @package _global_\ndefaults:\n  - override /model: small\nseed: 1234\n")
    for args in (["--config-dir", str(tmp_path / "myconf")], [f"hydra.searchpath=[file://{tmp_path / 'myconf'}]"]):
        proc = subprocess.run(
            [sys.executable, "-m", "rspnet.cli", *args, "experiment=mine", "--cfg", "job"],
            cwd=tmp_path,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        assert "seed: 1234" in proc.stdout and "name: small" in proc.stdout


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_repo(tmp_path: Path) -> None:
    """Build a wheel, install it (not editable) into a fresh venv reusing our dependencies, run from elsewhere."""
    wheels, venv, work, tree = tmp_path / "wheels", tmp_path / "venv", tmp_path / "elsewhere", tmp_path / "tree"
    # build from a copy of what the wheel is made of (an in-tree build would leave build/ in the repo)
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "local")
    for part in ("src", "conf", "experiments/genotypes", "experiments/model_zoo"):
        shutil.copytree(REPO / part, tree / part, ignore=skip)
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / part, tree / part)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(tree)],
        check=True,
        cwd=tmp_path,
        timeout=300,
    )
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # the dependencies come from this interpreter's site-packages (a .pth there is a plain path: rspnet
    # itself still resolves to the wheel, which comes first on sys.path)
    (Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    wheel = next(wheels.glob("rspnet-*.whl"))
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
        check=True,
        timeout=300,
    )
    work.mkdir()
    env = {k: v for k, v in ENV.items() if k != "PYTHONPATH"}
    where = subprocess.run(
        [str(py), "-c", "import rspnet.resources as r; print(r.__file__); print(r.config_dir())"],
        cwd=work,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert all(p.startswith(site) for p in where), where  # the installed package and its data, not the repo
    # the zoo's trained CamVid model, from the weights inside the installed package
    zoo = subprocess.run(
        [str(py), "-c", ZOO_CAMVID],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert zoo.returncode == 0, zoo.stderr[-3000:]
    weights, described = zoo.stdout.strip().splitlines()
    assert weights.startswith(site) and weights.endswith("camvid.safetensors"), weights
    assert described == "zoo True 11 sky (1, 11, 64, 96)", described
    rspnet = str(venv / "bin" / "rspnet")
    proc = subprocess.run(
        [rspnet, "stage=summary", "model=paper", "print_config=false", "paths.output_dir=summary"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((work / "summary" / "summary.json").read_text())
    assert summary["model"] == "paper" and summary["arch_provenance"] == {"genotype": "preset", "macro": "preset"}
    proc = subprocess.run(
        [
            rspnet,
            "experiment=demo",
            "debug=limit",
            "dataset.num_train=8",
            "dataset.num_val=4",
            "trainer.limit_train_batches=1",
            "trainer.limit_val_batches=1",
            "paths.output_dir=demo",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (work / "demo" / "eval" / "metrics.json").is_file() and (work / "demo" / "pipeline.json").is_file()
