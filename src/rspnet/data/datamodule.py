"""One LightningDataModule for every dataset, the held-out selection slice of train, and the
50/50 weight/arch split (of the rest of train) for the searches."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.utilities import CombinedLoader
from torch.utils.data import DataLoader, Dataset, Subset, default_collate

from rspnet.data.base import IGNORE, SegDataset
from rspnet.data.selection import Selection, carve_holdout
from rspnet.errors import ConfigError, DataError
from rspnet.utils.threads import loader_workers


class EvalLoader(DataLoader):
    """A DataLoader whose iteration never moves torch's global RNG.

    Every iterator draws its workers' base seed from the global RNG, which the training shuffle and
    augmentations use; evaluation (one loader or several, `train.monitor_val`) must not shift them. (A
    `generator=` of its own would do the same, but a torch.Generator does not survive `ddp_spawn`'s pickling.)
    """

    def __iter__(self):  # noqa: ANN204 - DataLoader's own annotation
        with torch.random.fork_rng(devices=[]):
            return super().__iter__()


def eval_collate(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
    """`default_collate` of evaluation items; one line naming `dataset.val_batch_size` if their sizes differ.

    Evaluation labels keep their files' resolution, so images resized to one size may still carry
    labels of different sizes (e.g. `dataset.resize_long` over photos of several resolutions).
    """
    sizes = sorted({f"image {tuple(x.shape[-2:])} label {tuple(y.shape[-2:])}" for x, y in batch})
    if len(sizes) > 1:
        raise DataError(
            f"one evaluation batch holds images or labels of different sizes ({'; '.join(sizes[:3])}); "
            "set dataset.val_batch_size=1"
        )
    return default_collate(batch)


class SegDataModule(pl.LightningDataModule):
    """train/val/test loaders from `cfg.dataset`; `search_dataloaders()` for bi-level search."""

    def __init__(
        self,
        cfg: DictConfig,
        build: Callable[[DictConfig, str, bool], SegDataset],
        classes: Sequence[str],
        palette: Sequence[tuple[int, int, int]],
    ) -> None:
        super().__init__()
        self.cfg, self.dcfg, self._build = cfg, cfg.dataset, build
        # class metadata is static per dataset, so it is available before setup()
        self.classes = list(classes)
        self.palette = [tuple(c) for c in palette]
        self.num_classes = len(self.classes)
        self.ignore_index = IGNORE
        self.train_dataset: SegDataset | None = None
        self.val_dataset: SegDataset | None = None
        self.test_dataset: Dataset | None = None
        self._search_split: dict[str, Any] | None = None
        self._search_mode: str | None = None  # CombinedLoader mode once `use_search_loaders` was called
        self.selection = Selection.from_cfg(cfg)
        self._holdout: dict[str, Any] | None = None  # {"fit", "holdout", ...}: see selection.carve_holdout
        self.holdout_dataset: Dataset | None = None
        # stage=train sets it from train.monitor_val: val validated beside the held-out slice (never selects)
        self.monitor_val = False
        self.batch_size = self._positive("batch_size")
        self.val_batch_size = self._positive("val_batch_size")

    def _positive(self, key: str) -> int:
        value = int(self.dcfg.get(key, 1))
        if value < 1:
            raise ConfigError(f"dataset.{key}={value} must be >= 1")
        return value

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets a stage needs (fit/None: train + val; validate: val; test/predict: cfg.split)."""
        if stage in (None, "fit") and self.train_dataset is None:
            self.train_dataset = self._build(self.cfg, "train", True)
            if self.selection.holds_out:
                ds = self.train_dataset
                self._set_holdout(carve_holdout(len(ds), self.selection, str(self.dcfg.name), ds.sequences()))
        if stage in (None, "fit", "validate") and self.val_dataset is None:
            self.val_dataset = self._build(self.cfg, "val", False)
        if stage in ("test", "predict"):
            self._test()

    def _test(self) -> Dataset:
        """Dataset of `cfg.split` with the eval pipeline (reuses val when split=val; `select` = the held-out
        slice of train that `train.holdout_*` carve, the frames a training run selected its checkpoint on)."""
        split = str(self.cfg.get("split", "val"))
        if self.test_dataset is None:
            if split == "select":
                if not self.selection.holds_out:
                    raise ConfigError(
                        "split=select is the held-out slice of train: set train.holdout_sequences=[...] or "
                        "train.holdout_fraction > 0 as the training run did"
                    )
                self.test_dataset = self._require_holdout()
            elif split == "val" and self.val_dataset is not None:
                self.test_dataset = self.val_dataset
            else:
                self.test_dataset = self._build(self.cfg, split, False)
        return self.test_dataset

    def _loader(self, ds: Dataset, batch_size: int, train: bool) -> DataLoader:
        workers = int(self.dcfg.get("num_workers", 0))
        return (DataLoader if train else EvalLoader)(
            ds,
            batch_size=batch_size,
            shuffle=train,
            # a dataset smaller than one batch would otherwise yield no batch at all
            drop_last=train and len(ds) >= batch_size,  # type: ignore[arg-type]
            pin_memory=bool(self.dcfg.get("pin_memory", False)),
            persistent_workers=workers > 0,
            **loader_workers(workers),  # one thread per worker (the main process holds the rest)
            collate_fn=None if train else eval_collate,
        )

    def _require(self, ds: SegDataset | None, stage: str) -> SegDataset:
        if ds is None:
            self.setup(stage)
            ds = self.train_dataset if stage == "fit" else self.val_dataset
        assert ds is not None
        return ds

    def use_search_loaders(self, combine_mode: str) -> None:
        """Fit as the bi-level searches do: train = {weight, arch} halves, val = `search_val_dataloader`.

        The weight/arch split then goes into checkpoints (`state_dict`) and is checked on resume.
        """
        self._search_mode = combine_mode

    def train_dataloader(self) -> DataLoader | CombinedLoader:
        """Shuffled, augmented loader over the training images (train minus the held-out slice).

        In search mode: a CombinedLoader of the weight and arch halves (`search_dataloaders`).
        """
        if self._search_mode is not None:
            weight, arch = self.search_dataloaders()
            return CombinedLoader({"weight": weight, "arch": arch}, mode=self._search_mode)
        return self._loader(self._fit_dataset(), self.batch_size, train=True)

    def val_dataloader(self) -> DataLoader | list:
        """Validation during fit = the selection split: the held-out slice, else val (train.select=val),
        else nothing (train.select=last with no slice); normalise only."""
        if self._search_mode is not None:
            return self.search_val_dataloader()
        ds = self.selection_dataset()
        if ds is None:
            return []
        loader = self._loader(ds, self.val_batch_size, train=False)
        if len(self.val_prefixes()) == 1:
            return loader
        return [loader, self._loader(self._require(self.val_dataset, "validate"), self.val_batch_size, train=False)]

    def val_prefixes(self) -> list[tuple[str, ...]]:
        """Per `val_dataloader` loader, the metric prefixes it is logged under: `select` = the selection split,
        `val` = the val split (train.select=val: one loader, both names; `monitor_val`: val as a second loader)."""
        if self._search_mode is None and self.selection.select == "val":
            return [("select", "val")]
        if self._search_mode is None and self.monitor_val and self.selection.holds_out:
            return [("select",), ("val",)]
        return [("select",)]

    def test_dataloader(self) -> DataLoader:
        """Loader over `cfg.split` (normalise only)."""
        return self._loader(self._test(), self.val_batch_size, train=False)

    # --- selection: the held-out slice of train ----------------------------------------------
    def _set_holdout(self, state: dict[str, Any]) -> None:
        """Use this held-out slice: the eval-pipeline dataset of its images; the search split is redone."""
        self._holdout = dict(state)
        self.holdout_dataset = Subset(self._build(self.cfg, "train", False), self._holdout["holdout"])
        self._search_split = None

    def fit_indices(self) -> list[int]:
        """Indices of the train split that are trained on (all of them when nothing is held out)."""
        ds = self._require(self.train_dataset, "fit")
        return list(self._holdout["fit"]) if self._holdout is not None else list(range(len(ds)))

    def _fit_dataset(self) -> Dataset:
        ds = self._require(self.train_dataset, "fit")
        return Subset(ds, self._holdout["fit"]) if self._holdout is not None else ds

    def selection_dataset(self) -> Dataset | None:
        """The held-out slice, val (train.select=val) or None."""
        if self.selection.holds_out:
            self._require(self.train_dataset, "fit")
            return self.holdout_dataset
        return self._require(self.val_dataset, "validate") if self.selection.select == "val" else None

    def holdout_state(self) -> dict[str, Any] | None:
        """The held-out slice (plain data), or None when nothing is held out."""
        self._require(self.train_dataset, "fit")
        return None if self._holdout is None else dict(self._holdout)

    def state_dict(self) -> dict[str, Any]:
        """Saved in checkpoints by Lightning: the held-out slice and, while searching, the weight/arch split."""
        state: dict[str, Any] = {"holdout": self._holdout} if self._holdout is not None else {}
        if self._search_mode is not None:
            state["search_split"] = self.split_state()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the held-out slice of a checkpoint (it must fit the current train split); check the search split."""
        saved = state.get("holdout")
        if saved is not None:
            n = len(self._require(self.train_dataset, "fit"))
            if int(saved.get("num_train", -1)) != n:
                raise DataError(
                    f"checkpoint held-out slice was made for {saved.get('num_train')} train images, "
                    f"dataset={self.dcfg.name} has {n}; resume with the same dataset"
                )
            if saved != self._holdout:
                self._set_holdout(saved)
        split = state.get("search_split")
        if split is not None and self._search_mode is not None and split != self.split_state():
            raise ConfigError(
                "the checkpoint was searched on a different weight/arch data split; "
                "resume with the same seed and search.arch_split"
            )

    # --- bi-level search: deterministic weight/arch halves of the training images ------------
    def _split_indices(self) -> dict[str, Any]:
        if self._search_split is None:
            pool = self.fit_indices()
            n = len(pool)
            frac = float(self.cfg.get("search", {}).get("arch_split", 0.5))
            if not 0.0 < frac < 1.0:
                raise ConfigError(f"search.arch_split={frac} must be between 0 and 1 (exclusive)")
            if n < 2:
                raise DataError(
                    f"dataset={self.dcfg.name}: the train split has {n} image(s); "
                    f"the search needs >= 2 to split into weight/arch halves"
                )
            seed = int(self.cfg.get("seed", 0))
            perm = np.random.default_rng(seed).permutation(n)
            n_arch = min(max(int(round(n * frac)), 1), n - 1)
            self._search_split = {
                "seed": seed,
                "arch_split": frac,
                "num_train": len(self.train_dataset or []),
                "weight": sorted(pool[int(i)] for i in perm[n_arch:]),
                "arch": sorted(pool[int(i)] for i in perm[:n_arch]),
                "holdout": self._holdout["holdout"] if self._holdout is not None else [],
            }
        return self._search_split

    def search_dataloaders(self) -> tuple[DataLoader, DataLoader]:
        """(weight_loader, arch_loader): augmented, shuffled loaders over disjoint train halves."""
        state, ds = self._split_indices(), self._require(self.train_dataset, "fit")
        return (
            self._loader(Subset(ds, state["weight"]), self.batch_size, train=True),
            self._loader(Subset(ds, state["arch"]), self.batch_size, train=True),
        )

    def search_val_dataloader(self) -> DataLoader:
        """Validation of the searches: the selection split, else the arch half."""
        ds = self.selection_dataset()
        if ds is None:  # train.select=last with nothing held out: the arch half (eval pipeline)
            ds = self._arch_eval_dataset()
        return self._loader(ds, self.val_batch_size, train=False)

    def _arch_eval_dataset(self) -> Dataset:
        return Subset(self._build(self.cfg, "train", False), self._split_indices()["arch"])

    def scoring_dataloader(self, split: str) -> DataLoader:
        """Eval-pipeline loader (fixed order) for scoring a trained supernet: the arch half of train
        (`arch`) or the held-out slice of train (`select`); never val."""
        if split == "arch":
            return self._loader(self._arch_eval_dataset(), self.val_batch_size, train=False)
        if split == "select" and self.selection.holds_out:
            return self._loader(self._require_holdout(), self.val_batch_size, train=False)
        raise ConfigError(f"scoring split {split!r}: use arch, or select with a held-out slice of train")

    def _require_holdout(self) -> Dataset:
        self._require(self.train_dataset, "fit")
        assert self.holdout_dataset is not None
        return self.holdout_dataset

    def split_state(self) -> dict[str, Any]:
        """The weight/arch split (plain data; stored in checkpoints)."""
        return dict(self._split_indices())
