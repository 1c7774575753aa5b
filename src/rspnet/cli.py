"""`rspnet` console entry point: one @hydra.main app dispatching on `stage=`."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from rspnet.errors import RSPNetError, StoppedError
from rspnet.resources import config_dir  # also registers the ${rspnet.genotype:NAME} resolver
from rspnet.utils.callbacks import fail_sweep
from rspnet.utils.runtime import output_dir
from rspnet.utils.validate import check_moved

log = logging.getLogger("rspnet")
CONFIG_DIR = str(config_dir())  # package data (rspnet.conf); users add theirs with --config-dir


def _run_dir(output_dir: str | None, default: str) -> str:
    """Hydra run/sweep dir: `paths.output_dir` when the user gave one, else Hydra's default."""
    return default if output_dir in (None, "", "None", "null") else str(output_dir)


if not OmegaConf.has_resolver("rspnet_run_dir"):
    OmegaConf.register_new_resolver("rspnet_run_dir", _run_dir)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def _main(cfg: DictConfig) -> float | None:
    # torch and Lightning load here, when a stage runs: `rspnet --help` and argument errors stay fast
    from rspnet.stages import run_stage
    from rspnet.utils.distributed import ranks_fail_together
    from rspnet.utils.job_process import command_of_job, report_objective, run_job_process

    with open_dict(cfg):
        # the run dir is paths.output_dir when given; in multirun each job gets its own subdir
        cfg.paths.output_dir = HydraConfig.get().runtime.output_dir
    alone = HydraConfig.get().mode == RunMode.MULTIRUN and _check_sweep_job(cfg)
    try:
        if alone:  # DDP that re-launches the command line: the job runs as its own `rspnet` process
            result = {"objective": run_job_process(command_of_job(HydraConfig.get()), Path(cfg.paths.output_dir))}
        else:
            with ranks_fail_together(_failure):  # torchrun/SLURM/ddp ranks: one rank's fault ends them all
                result = run_stage(cfg)
    except StoppedError as e:  # SIGTERM/SIGINT: never exit 0; a sweep stops here too
        print(f"rspnet: error: {e}", file=sys.stderr)
        sys.exit(128 + e.signum)
    except RSPNetError as e:
        print(f"rspnet: error: {_message(e)}", file=sys.stderr)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # Hydra marks this job failed, runs the others, then reports (sweep summary)
        sys.exit(2)
    # the optuna sweeper optimises the value returned here
    metric = (result or {}).get("objective")
    metric = float(metric) if metric is not None else None
    report_objective(metric)  # a sweep job's own process: for the sweep that started it
    return metric


def _check_sweep_job(cfg: DictConfig) -> bool:
    """Before any Trainer exists: stop the sweep on a DDP setup that cannot run in it (multi-node, local).

    Also when the sweep-level check passed (`-m trainer=cpu,ddp`: swept values are per job).
    True if the job must run as its own process: a local launcher and a strategy that re-runs the command line.
    """
    from rspnet.utils.trainer import check_ddp_in_multirun, relaunches_script  # loads Lightning; the stage needs it

    hydra_cfg = HydraConfig.get()
    launcher = str(OmegaConf.select(hydra_cfg, "launcher._target_", default=""))
    try:
        check_ddp_in_multirun(cfg.trainer, launcher)
    except RSPNetError as e:
        fail_sweep(str(e), Path(str(hydra_cfg.sweep.dir)), Path(str(hydra_cfg.runtime.output_dir)))
    return relaunches_script(cfg.trainer) and not launcher.endswith("SlurmLauncher")


def _failure(e: BaseException) -> tuple[str, int]:
    """(one-line message, exit status) of a stage's failure on one DDP rank: as without DDP (128+signum, 2, 1)."""
    if isinstance(e, StoppedError):  # a signal on this rank: 128 + signum, as without DDP
        return str(e), 128 + e.signum
    if isinstance(e, RSPNetError):
        return _message(e), 2
    if isinstance(e, SystemExit):
        return f"exited with status {e.code}", e.code if isinstance(e.code, int) and e.code else 1
    first = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {first}" if first else type(e).__name__, 1


class SweptStageCheck(Callback):
    """Refuses `-m stage=a,b` without `paths.output_dir`: the sweep dir names the stage, so each stage's
    jobs would land in their own `multirun/<stage>/...`, apart from each other and the sweep summary."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        overrides = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
        swept = [o for o in overrides if o.key_or_group == "stage" and o.is_sweep_override()]
        if swept and _run_dir(OmegaConf.select(config, "paths.output_dir"), "") == "":
            fail_sweep(
                f"{swept[0].input_line}: a sweep over the stage needs paths.output_dir=DIR (the default sweep dir "
                "multirun/<stage>/<date>_<time> names one stage)",
                Path(str(config.hydra.sweep.dir)),
            )


def _message(e: RSPNetError) -> str:
    """The one-line message of `e`, also when a DataLoader worker wrapped it with its traceback."""
    msg = str(e)
    if "\nOriginal Traceback" in msg:  # torch re-raises a worker's error as "Caught X in ... worker\n<traceback>"
        last = msg.rstrip().splitlines()[-1]  # "rspnet.errors.DataError: <message>"
        msg = last.split(": ", 1)[-1]
    return msg


def _check_output_dir_arg(argv: list[str]) -> None:
    """Exit 2 with one line if a given `paths.output_dir=` cannot be used.

    Hydra creates the run dir before `run` could check it, and reports a failure there
    with a traceback; interpolations and sweeps are left to Hydra.
    """
    values = [a.split("=", 1)[1] for a in argv if a.lstrip("+").startswith("paths.output_dir=")]
    if not values or "${" in values[-1] or "," in values[-1]:
        return
    try:
        output_dir(OmegaConf.create({"paths": {"output_dir": values[-1]}}))
    except RSPNetError as e:
        print(f"rspnet: error: {e}", file=sys.stderr)
        sys.exit(2)


def _check_study_arg(argv: list[str]) -> None:
    """Exit 2 with one line for a phase of the CamVid study (conf/study) without an experiment: the phases
    read the `study:` node of experiment=camvid_study, and Hydra would report `${study.dir}` with a traceback."""
    phases = [a for a in argv if a.startswith("study=")]
    if phases and not any(a.lstrip("+").startswith("experiment=") for a in argv):
        print(
            f"rspnet: error: {phases[-1]}: a phase of the CamVid study runs on top of experiment=camvid_study "
            "(its study node: study.dir, study.target_params); add experiment=camvid_study",
            file=sys.stderr,
        )
        sys.exit(2)


def main() -> None:
    """Console-script entry (`rspnet ...`)."""
    _check_output_dir_arg(sys.argv[1:])
    _check_study_arg(sys.argv[1:])
    try:
        check_moved(sys.argv[1:])  # Hydra would only say "not in struct"; name the new key
    except RSPNetError as e:
        print(f"rspnet: error: {e}", file=sys.stderr)
        sys.exit(2)
    _main()


if __name__ == "__main__":
    main()
