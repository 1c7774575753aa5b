"""Logger factory: `logger=wandb|csv|tensorboard|none`, each a `_target_` config instantiated by Hydra;
`extra_loggers=[csv]` runs more of them beside it (names of `conf/logger/*.yaml`, or `_target_` configs).

W&B is offline unless WANDB_MODE says otherwise; its run id is kept in the run dir so that
`ckpt_path=last` continues the same W&B run. Every stage is its own W&B run (job_type = the stage);
runs that hand artifacts to each other share a group: `logger.group`, else the group of the run that
wrote the stage's input (`genotype=`, `macro_arch=`, `ckpt=`; kept in `<run dir>/wandb_group.txt`),
else a new one. Inputs are declared as used artifacts, so W&B shows the genotype -> macro -> model lineage.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import os
import uuid
import warnings
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_only

from rspnet.errors import ConfigError
from rspnet.utils.io import atomic_write_text, file_sha256
from rspnet.utils.labels import run_labels

log = logging.getLogger(__name__)
WANDB_ID_FILE = "wandb_id.txt"
WANDB_GROUP_FILE = "wandb_group.txt"
# keys recipes set to group runs (W&B arguments); other loggers do not take them
RUN_LABELS = ("group", "tags")
# the stage inputs that are W&B artifacts of an earlier stage: config key -> artifact type
INPUT_ARTIFACTS = {"genotype": "genotype", "macro_arch": "macro", "ckpt": "model"}
# the run summary keeps the best selection-split score, not the last one
SUMMARY_MAX = ("select/miou",)


def build_logger(cfg: DictConfig, out: Path) -> Any:
    """`cfg.logger` (+ `cfg.extra_loggers`) writing under `out`: one logger, a list of them, or False for none."""
    specs = [("logger", cfg.get("logger"))] + [
        (f"extra_loggers[{i}]", _extra_spec(cfg, spec)) for i, spec in enumerate(cfg.get("extra_loggers") or [])
    ]
    loggers, targets = [], []
    for where, spec in specs:
        target = str(spec.get("_target_") or "") if isinstance(spec, DictConfig) else ""
        if not target:
            continue
        if target in targets:
            raise ConfigError(f"{where}: a second {target.rsplit('.', 1)[-1]}; each logger may run once")
        targets.append(target)
        loggers.append(_build_one(cfg, spec, target, out))
    if not loggers:
        return False
    return loggers[0] if len(loggers) == 1 else loggers


def _extra_spec(cfg: DictConfig, spec: Any) -> DictConfig:
    """An `extra_loggers` entry: a logger config name (`csv`) read from conf/logger/, or a `_target_` config."""
    if isinstance(spec, DictConfig):
        return spec
    from rspnet.resources import config_dir

    path = config_dir() / "logger" / f"{spec}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError(f"extra_loggers: no logger config {spec!r}; choose from {', '.join(names)}")
    # resolved against the run's config (wandb.yaml's job_type is ${stage.name})
    root = copy.deepcopy(cfg)
    OmegaConf.set_struct(root, False)
    root._extra_logger = OmegaConf.load(path)
    return root._extra_logger


def _build_one(cfg: DictConfig, spec: DictConfig, target: str, out: Path) -> Any:
    """Instantiate one `_target_` logger config."""
    kwargs: dict[str, Any] = {"save_dir": str(out)}
    wandb = target.endswith("WandbLogger")
    if wandb:
        kwargs.update(_wandb_kwargs(cfg, spec, out))
    else:  # run labels the recipes set for every logger (kept in config.yaml for experiments.results)
        spec = OmegaConf.masked_copy(spec, [k for k in spec if k not in RUN_LABELS])
    if target.endswith("TensorBoardLogger") and not any(
        importlib.util.find_spec(m) for m in ("tensorboard", "tensorboardX")
    ):
        raise ConfigError(
            "logger=tensorboard needs the tensorboard or tensorboardX package: "
            "pip install 'rspnet[tensorboard]' (or use logger=csv)"
        )
    try:
        # partial first: `config` (the whole cfg, with its own `_target_`s) must not be instantiated
        logger = instantiate(spec, _partial_=True, _convert_="all")(**kwargs)
    except (InstantiationException, TypeError) as e:
        raise ConfigError(f"logger ({target}): {str(e).splitlines()[0]}; check the logger.* keys") from e
    if wandb:
        # Lightning always passes anonymous=None, which wandb >= 0.22 answers with a deprecation
        # warning on every run; leaving the key out is the same setting
        init = getattr(logger, "_wandb_init", {})
        if init.get("anonymous", False) is None:
            del init["anonymous"]
        _start_wandb_run(logger, cfg, out)
    return logger


def _wandb_kwargs(cfg: DictConfig, spec: DictConfig, out: Path) -> dict[str, Any]:
    """W&B offline by default, the resolved config, the group, and the stored run id when resuming."""
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    # one W&B run per stage: Lightning would otherwise attach to a run still open in this
    # process (an earlier pipeline stage) and log into it with that stage's config
    finish_loggers()
    # a readable run name and the tags: the stage, the experiment, root `tags`, logger.tags (rspnet.utils.labels)
    kwargs: dict[str, Any] = {"config": OmegaConf.to_container(cfg, resolve=True), **run_labels(cfg)}
    resuming = bool(cfg.get("ckpt_path")) and not spec.get("id")
    stored = out / WANDB_ID_FILE
    if resuming and stored.is_file():
        kwargs.update(id=stored.read_text().strip(), resume="allow")  # ckpt_path=last: the same W&B run
    if not spec.get("group"):
        kwargs["group"] = _default_group(cfg, out, resuming)
    return kwargs


def _run_dir_of(path: Path) -> Path:
    """The run dir that wrote an artifact file (a checkpoint sits in `<run dir>/checkpoints/`)."""
    parent = path.parent
    return parent.parent if parent.name == "checkpoints" else parent


def _default_group(cfg: DictConfig, out: Path, resuming: bool) -> str:
    """This run's stored group when resuming, else the group of the run that wrote an input, else a new one."""
    candidates = [out] if resuming else []
    for key in INPUT_ARTIFACTS:
        value = cfg.get(key)
        if value and Path(str(value)).is_file():
            candidates.append(_run_dir_of(Path(str(value))))
    for run_dir in candidates:
        stored = run_dir / WANDB_GROUP_FILE
        if stored.is_file() and stored.read_text().strip():
            return stored.read_text().strip()
    return f"{cfg.stage.name}-{uuid.uuid4().hex[:8]}"


def _start_wandb_run(logger: WandbLogger, cfg: DictConfig, out: Path) -> None:
    """Rank 0 starts the run: store its id and group, keep the best selection score, declare the used inputs."""
    if rank_zero_only.rank != 0:
        return
    run = logger.experiment  # starting the run is what assigns the id
    atomic_write_text(out / WANDB_ID_FILE, str(run.id) + "\n")
    atomic_write_text(out / WANDB_GROUP_FILE, str(run.group or "") + "\n")
    for key in SUMMARY_MAX:
        run.define_metric(key, summary="max")
    for key, kind in INPUT_ARTIFACTS.items():
        value = cfg.get(key)
        if value and Path(str(value)).is_file():
            use_file_artifact(logger, Path(str(value)), kind)


def all_loggers(logger: Any) -> list[Any]:
    """The loggers `build_logger` returned (one logger, a list of them, or False for none) as a list."""
    if isinstance(logger, (list, tuple)):
        return list(logger)
    return [logger] if logger else []


def wandb_logger(logger: Any) -> WandbLogger | None:
    """The W&B logger among `logger` (one logger, a list of them, or False), else None."""
    return next((lg for lg in all_loggers(logger) if isinstance(lg, WandbLogger)), None)


def file_artifact(path: Path, kind: str) -> Any:
    """A W&B artifact of one file, named by its content: the run that writes it and the runs that use it
    build the same artifact (name, file name and digest), which W&B joins into one node of the lineage graph."""
    import wandb

    digest = file_sha256(path)[:16]
    artifact = wandb.Artifact(name=f"{kind}-{digest}", type=kind, metadata={"source": Path(path).name})
    artifact.add_file(str(path), name=f"{kind}{Path(path).suffix}")
    return artifact


def log_file_artifact(logger: Any, path: Path, kind: str) -> None:
    """Declare `path` an output of this stage's W&B run (rank 0; nothing without a W&B logger)."""
    lg = wandb_logger(logger)
    if lg is not None and rank_zero_only.rank == 0 and Path(path).is_file():
        lg.experiment.log_artifact(file_artifact(Path(path), kind))


def use_file_artifact(logger: Any, path: Path, kind: str) -> None:
    """Declare `path` an input of this stage's W&B run.

    Online this is `run.use_artifact`. Offline, wandb refuses `use_artifact`; the draft artifact is then
    recorded the way `use_artifact` records a draft (`_log_artifact(..., use_after_commit=True)`), which
    `wandb sync` turns into the same "used by" edge.
    """
    lg = wandb_logger(logger)
    if lg is None or rank_zero_only.rank != 0:
        return
    run, artifact = lg.experiment, file_artifact(path, kind)
    if not run.settings._offline:
        run.use_artifact(artifact)
    elif hasattr(run, "_log_artifact"):
        run._log_artifact(artifact, is_user_created=True, use_after_commit=True)
    else:  # pragma: no cover - a wandb without the private hook: the lineage edge is missing, say so
        log.warning("W&B: this wandb version cannot record %s as a used artifact offline", path)


def finish_loggers() -> None:
    """Close any W&B run (always called, also on errors)."""
    try:
        import wandb  # here: importing wandb takes about a second, and only W&B runs need it
    except ImportError:  # pragma: no cover - wandb is a hard dependency
        return
    if wandb.run is not None:
        wandb.finish()


def log_image(logger: Any, key: str, image: Any, step: int | None = None) -> None:
    """Log an image (HxWx3 uint8 array or matplotlib figure) to W&B; other loggers skip it."""
    lg = wandb_logger(logger)
    if lg is not None:
        lg.log_image(key=key, images=[image], step=step)


# Lightning's advertisements, logged at INFO by its rank-zero logger on every Trainer
# ("💡 Tip: ... litlogger / litmodels"); only these records are dropped
_TIP_PREFIX = "💡 Tip:"
_RANK_ZERO_LOGGERS = (
    "pytorch_lightning.utilities.rank_zero",
    "lightning_fabric.utilities.rank_zero",
    "lightning_utilities.core.rank_zero",
)
# known deprecation noise from library internals, not actionable by users: (message regex, category)
_KNOWN_NOISE = (
    # torch >= 2.10 deprecates LeafSpec, which pytorch_lightning.utilities._pytree still builds
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),
)


class _DropTips(logging.Filter):
    """Drops Lightning's marketing tips, passes every other record."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_TIP_PREFIX)


def quiet_lightning() -> None:
    """Silence Lightning's tips and the known deprecation noise (targeted filters; idempotent)."""
    for name in _RANK_ZERO_LOGGERS:
        lg = logging.getLogger(name)
        if not any(isinstance(f, _DropTips) for f in lg.filters):
            lg.addFilter(_DropTips())
    for message, category in _KNOWN_NOISE:
        warnings.filterwarnings("ignore", message=message, category=category)
