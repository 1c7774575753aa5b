"""`WriteResult`: the one Lightning callback that writes a stage's result JSON, on global rank 0.

Every Lightning stage (cell_search, macro_search, train, eval) hands its result to this
callback: it runs where the fit/test ran (also inside `ddp_spawn` workers, where the
parent's trainer never sees the final counters or the best checkpoint), rank 0 writes the
file, and the stage returns the result (read back from the file in a ddp_spawn parent).
`make` must be picklable (a module-level function or a `functools.partial` of one):
ddp_spawn pickles the trainer with its callbacks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from rspnet.utils.io import atomic_write_json, json_safe, read_json

ResultFn = Callable[[pl.Trainer, pl.LightningModule], dict[str, Any]]


class WriteResult(pl.Callback):
    """At the end of `fit` (or `test`): `make(trainer, module)` -> `path` (atomic JSON, NaN as null) on rank 0."""

    def __init__(self, path: Path, make: ResultFn, on: str = "fit") -> None:
        if on not in ("fit", "test"):
            raise ValueError(f"WriteResult(on={on!r}): use 'fit' or 'test'")
        self.path, self.make, self.on = Path(path), make, on
        self.result: dict[str, Any] | None = None  # set in the processes where the fit/test ran

    def _write(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.result = json_safe(self.make(trainer, pl_module))  # NaN/inf as null, as in every artifact
        if trainer.is_global_zero:
            atomic_write_json(self.path, self.result)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.on == "fit":
            self._write(trainer, pl_module)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.on == "test":
            self._write(trainer, pl_module)

    def read(self, what: str) -> dict[str, Any]:
        """The result after fit/test returned: this process's own, or rank 0's file (ddp_spawn parents)."""
        return dict(self.result) if self.result is not None else read_json(self.path, what)
