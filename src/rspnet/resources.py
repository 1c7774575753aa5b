"""Files shipped with the package: the Hydra configs (`rspnet.conf`), the genotypes (`rspnet.genotypes`)
and the model zoo (`rspnet.model_zoo`: zoo.yaml and the published weights).

In the repository they live at the top level (`conf/`, `experiments/genotypes/`, `experiments/model_zoo/`);
`pyproject.toml` maps them into the package, so an installed wheel carries them and any
working directory works. Configs can name a shipped genotype as `${rspnet.genotype:paper_like}`.
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

from omegaconf import OmegaConf

from rspnet.errors import ConfigError

# package -> its folder in a source checkout (pyproject.toml [tool.setuptools] package-dir)
CHECKOUT_DIRS = {
    "rspnet.conf": "conf",
    "rspnet.genotypes": "experiments/genotypes",
    "rspnet.model_zoo": "experiments/model_zoo",
}


def _checkout() -> Path | None:
    """The repository root when `rspnet` is imported from a source checkout (src layout), else None."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() and (root / "src" / "rspnet").is_dir() else None


def package_dir(package: str) -> Path:
    """Folder of a data package: the installed package's, or the checkout's own copy.

    A source checkout (run with PYTHONPATH=src, or installed editable) always reads its own
    folders, so a second checkout never picks up the configs of the one that was installed.
    """
    root = _checkout()
    if root is not None and (root / CHECKOUT_DIRS[package]).is_dir():
        return root / CHECKOUT_DIRS[package]
    return Path(str(files(package)))


def config_dir() -> Path:
    """The shipped Hydra config folder (`config.yaml` and the groups)."""
    return package_dir("rspnet.conf")


def shipped_genotypes() -> list[str]:
    """Names of the shipped genotypes (`paper_like`, ...); the macro.json files shipped beside them are not."""
    return sorted(p.stem for p in package_dir("rspnet.genotypes").glob("*.json") if _is_genotype(p))


def _is_genotype(path: Path) -> bool:
    try:
        return json.loads(path.read_text()).get("format", "").startswith("rspnet.genotype/")
    except (OSError, ValueError, AttributeError):
        return False


def genotype_path(name: str) -> Path:
    """Path of the shipped genotype `name` (ConfigError naming the choices if unknown)."""
    path = package_dir("rspnet.genotypes") / f"{name}.json"
    if not path.is_file():
        raise ConfigError(
            f"unknown shipped genotype {name!r} in ${{rspnet.genotype:{name}}}; "
            f"shipped: {', '.join(shipped_genotypes())}"
        )
    return path


if not OmegaConf.has_resolver("rspnet.genotype"):
    OmegaConf.register_new_resolver("rspnet.genotype", lambda name: str(genotype_path(str(name))))
