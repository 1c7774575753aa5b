"""`LearningCurves`: per-epoch losses and mIoU of a fit -> DIR/curves.json and DIR/learning_curves.png.

Every fitting stage runs it (`run_callbacks`), whatever the logger: train loss, the selection
split's `select/*` and (stage=train) the val split's `val/*` monitoring numbers, one row per epoch,
and the epoch's wall seconds (`epoch_wall_s`: training steps plus that epoch's validation, as a user
waits for it; `python -m experiments.camvid_sizing --measured RUN` sizes a recipe's epochs from them).
The rows live in the callback's state, so `ckpt_path=last` goes on with them; the picture is
drawn when the fit ends (WandbMedia logs it to W&B).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from rspnet.utils.io import atomic_write_json

CURVES_JSON = "curves.json"
CURVES_PNG = "learning_curves.png"
# epoch-level metrics drawn (Lightning's `_epoch` suffix: the epoch mean of a per-step metric)
KEYS = ("train/loss_epoch", "train/arch_loss_epoch", "select/loss", "select/miou")
KEYS += ("val/loss", "val/miou")


class LearningCurves(pl.Callback):
    """Collects one row of epoch metrics per finished epoch; writes the JSON each epoch, the PNG at the end."""

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.rows: list[dict[str, float]] = []
        self._started: dict[int, float] = {}  # epoch -> perf_counter at its start (this process only)

    def _record(self, trainer: pl.Trainer, epoch: int) -> None:
        """Row of `epoch` from the callback metrics (read after Lightning reduced the epoch's logs)."""
        if epoch < 0 or any(row["epoch"] == epoch for row in self.rows) or trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        row = {k: float(metrics[k]) for k in KEYS if k in metrics and math.isfinite(float(metrics[k]))}
        if epoch in self._started:
            row["epoch_wall_s"] = round(time.perf_counter() - self._started.pop(epoch), 3)
        if row:
            self.rows.append({"epoch": epoch, **row})
            if trainer.is_global_zero:
                atomic_write_json(self.out / CURVES_JSON, {"rows": self.rows})

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # the epoch-mean train loss reaches callback_metrics only after every on_train_epoch_end hook
        self._record(trainer, trainer.current_epoch - 1)
        self._started[trainer.current_epoch] = time.perf_counter()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._record(trainer, trainer.current_epoch - 1)
        if trainer.is_global_zero and self.rows:
            from rspnet.viz import save_figure
            from rspnet.viz.curves import learning_curves_figure

            title = f"learning curves ({pl_module.__class__.__name__})"
            save_figure(learning_curves_figure(self.rows, title), self.out / CURVES_PNG, dpi=80)

    def state_dict(self) -> dict[str, Any]:
        return {"rows": list(self.rows)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict.get("rows", []))
