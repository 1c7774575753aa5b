"""Hydra callback: every multirun ends with `<sweep dir>/summary.json` + `summary.md`."""

from __future__ import annotations

import atexit
import logging
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from hydra.core.utils import JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from rspnet.errors import ArtifactError, ConfigError
from rspnet.utils.io import atomic_write_json, atomic_write_text, read_json

log = logging.getLogger(__name__)

JOB_FILE = "job.json"
# artifacts a stage leaves in its output dir, read into the summary when present
RESULT_FILES = ("metrics.json", "train.json", "genotype.json", "macro.json", "pipeline.json")
# the message of fail_sweep in this process, kept for the summary written at exit
_stopped: list[str] = []


def _is_rank_zero() -> bool:
    """True outside DDP and on global rank 0 (SLURM tasks or Lightning-launched ranks)."""
    for var in ("SLURM_PROCID", "RANK"):
        if os.environ.get(var, "0") != "0":
            return False
    return True


def _result_of(job_dir: Path) -> dict[str, Any]:
    """Headline numbers from the artifacts found in one job's output dir."""
    result: dict[str, Any] = {}
    for name in RESULT_FILES:
        path = job_dir / name
        if not path.is_file():
            continue
        try:
            data = read_json(path, name)
        except ArtifactError as e:  # an unreadable file must not break the summary
            result[name] = f"unreadable: {e}"
            continue
        if name == "metrics.json":
            result.update({k: data.get(k) for k in ("miou", "pixel_acc", "split", "dataset")})
        elif name == "train.json":
            result["best_val_miou"] = data.get("best_val_miou")
            result["params"] = data.get("params")
        elif name == "genotype.json":
            result["genotype_ops"] = [e.get("op") for e in data.get("edges", [])]
        elif name == "macro.json":
            result["macro_nodes"] = len(data.get("nodes", []))
        elif name == "pipeline.json":
            result["pipeline_miou"] = data.get("miou")
            result["params"] = data.get("params")
    return result


def collect_jobs(sweep_dir: Path) -> list[dict[str, Any]]:
    """One record per job dir under `sweep_dir` (those with a job.json or a .hydra folder)."""
    jobs = []
    dirs = {p.parent for p in sweep_dir.rglob(JOB_FILE)} | {p.parent for p in sweep_dir.rglob(".hydra")}
    for job_dir in sorted(dirs, key=lambda p: (len(p.parts), _num(p.name), str(p))):
        if job_dir == sweep_dir:
            continue
        record: dict[str, Any] = {"num": _num(job_dir.name), "output_dir": str(job_dir), "status": "unknown"}
        if (job_dir / JOB_FILE).is_file():
            record.update(read_json(job_dir / JOB_FILE, "job record"))
        elif (job_dir / ".hydra" / "overrides.yaml").is_file():
            record["overrides"] = list(OmegaConf.load(job_dir / ".hydra" / "overrides.yaml"))
        record["result"] = _result_of(job_dir)
        jobs.append(record)
    return jobs


def _num(name: str) -> int:
    """Job number from a sweep subdir name (non-numeric names sort last)."""
    return int(name) if name.isdigit() else 1 << 30


def _markdown(sweep_dir: Path, jobs: list[dict[str, Any]]) -> str:
    """The summary as a markdown table (one row per job)."""
    lines = [f"# Sweep summary: `{sweep_dir}`", "", f"{len(jobs)} job(s).", ""]
    lines += ["| # | overrides | status | objective | mIoU | genotype | output dir |", "|---|---|---|---|---|---|---|"]
    for job in jobs:
        res = job.get("result", {})
        miou = next((res[k] for k in ("miou", "pipeline_miou", "best_val_miou") if res.get(k) is not None), None)
        lines.append(
            "| {} | {} | {} | {} | {} | {} | `{}` |".format(
                job.get("num"),
                " ".join(f"`{o}`" for o in job.get("overrides", [])),
                job.get("status"),
                _fmt(job.get("objective")),
                _fmt(miou),
                " ".join(res.get("genotype_ops", [])) or "–",
                job.get("output_dir"),
            )
        )
    return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    """Numbers with 4 decimals, missing values as a dash."""
    if value is None:
        return "–"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def write_summary(sweep_dir: Path, error: str | None = None) -> dict[str, Any]:
    """Write `summary.json` and `summary.md` for the jobs under `sweep_dir` (and the sweep's error); return it."""
    jobs = collect_jobs(sweep_dir)
    summary: dict[str, Any] = {"format": "rspnet.sweep/1", "sweep_dir": str(sweep_dir), "jobs": jobs}
    if error is not None:
        summary["error"] = error
    optuna = sweep_dir / "optimization_results.yaml"
    if optuna.is_file():
        summary["optuna"] = OmegaConf.to_container(OmegaConf.load(optuna))
    atomic_write_json(sweep_dir / "summary.json", summary)
    table = _markdown(sweep_dir, jobs) + (f"\n**The sweep stopped:** {error}\n" if error else "")
    atomic_write_text(sweep_dir / "summary.md", table)
    return summary


def fail_sweep(message: str, sweep_dir: Path, job_dir: Path | None = None) -> NoReturn:
    """Stop the whole sweep: record the error (job.json, summary), print one line, exit 2.

    A SystemExit, unlike an Exception, is neither turned into a warning by Hydra's callback
    runner nor recorded as one failed job by its launcher, so no further job starts.
    """
    _stopped.append(message)
    if _is_rank_zero():
        if job_dir is not None:
            job_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(
                job_dir / JOB_FILE,
                {
                    "num": _num(job_dir.name),
                    "output_dir": str(job_dir),
                    "status": "failed",
                    "error": f"ConfigError: {message}",
                },
            )
        sweep_dir.mkdir(parents=True, exist_ok=True)
        write_summary(sweep_dir, error=message)
    print(f"rspnet: error: {message}", file=sys.stderr)
    raise SystemExit(2)


class SweepSummary(Callback):
    """Records each job (`job.json` in its output dir) and summarises the sweep at its end."""

    def __init__(self) -> None:
        self.sweep_dir: Path | None = None
        self.finished = False

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Refuse DDP setups that cannot run inside a sweep; remember the sweep dir; summarise at exit."""
        from rspnet.utils.trainer import check_ddp_in_multirun  # Lightning: only when a sweep starts

        self.sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            check_ddp_in_multirun(
                config.get("trainer") or {}, str(OmegaConf.select(config, "hydra.launcher._target_", default=""))
            )
        except ConfigError as e:
            fail_sweep(str(e), self.sweep_dir)
        if _is_rank_zero():  # a sweep that fails (a job's SystemExit, the sweeper raising) skips on_multirun_end
            atexit.register(self._summary_at_exit)

    def _summary_at_exit(self) -> None:
        """Write the summary if on_multirun_end did not (the sweep failed); never raises at exit."""
        if self.sweep_dir is not None and self.sweep_dir.is_dir() and not self.finished:
            try:
                write_summary(self.sweep_dir, error=_stopped[-1] if _stopped else None)
            except Exception as e:  # noqa: BLE001 - at interpreter exit a summary error must not mask the sweep's own
                log.warning("could not write the sweep summary: %s", e)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        """Write `<job output dir>/job.json`: overrides, status, the value the app returned."""
        hydra_cfg = job_return.hydra_cfg.hydra if job_return.hydra_cfg is not None else None
        if hydra_cfg is None or hydra_cfg.mode != RunMode.MULTIRUN or not _is_rank_zero():
            return
        out = Path(str(hydra_cfg.runtime.output_dir))
        record: dict[str, Any] = {
            "num": int(hydra_cfg.job.num),
            "overrides": list(job_return.overrides or []),
            "output_dir": str(out),
            "status": job_return.status.name.lower(),
        }
        if job_return.status == JobStatus.COMPLETED:
            value = job_return.return_value
            record["objective"] = float(value) if isinstance(value, (int, float)) else None
        else:
            record["error"] = f"{type(job_return._return_value).__name__}: {job_return._return_value}"
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / JOB_FILE, record)
        if self.sweep_dir is not None:  # same process as the sweep (local launcher): keep it current
            write_summary(self.sweep_dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Write the sweep summary next to the job dirs."""
        sweep_dir = self.sweep_dir or Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            return
        summary = write_summary(sweep_dir)
        self.finished = True
        log.info("sweep summary (%d jobs): %s", len(summary["jobs"]), sweep_dir / "summary.md")
