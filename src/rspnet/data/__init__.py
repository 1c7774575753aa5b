"""Datasets (synthetic, cityscapes, mapillary, camvid), transforms and the LightningDataModule."""

from __future__ import annotations

import importlib
from types import ModuleType

from omegaconf import DictConfig

from rspnet.data.base import SegDataset
from rspnet.data.datamodule import SegDataModule
from rspnet.data.transforms import MEAN, STD, build_transform
from rspnet.errors import ConfigError

DATASETS: dict[str, str] = {
    "synthetic": "rspnet.data.synthetic",
    "cityscapes": "rspnet.data.cityscapes",
    "mapillary": "rspnet.data.mapillary",
    "camvid": "rspnet.data.camvid",
    "known_op": "rspnet.data.known_op",
}


def dataset_module(cfg: DictConfig) -> ModuleType:
    """The module implementing `cfg.dataset.name` (it has CLASSES, PALETTE, build, available_splits)."""
    name = str(cfg.dataset.get("name"))
    if name not in DATASETS:
        raise ConfigError(f"dataset.name={name} is unknown; choose one of: {', '.join(DATASETS)}")
    module = importlib.import_module(DATASETS[name])
    expected = cfg.dataset.get("num_classes")
    if expected is not None and int(expected) != len(module.CLASSES):
        raise ConfigError(
            f"dataset.num_classes={expected} but dataset={name} has {len(module.CLASSES)} classes; "
            f"fix dataset.num_classes"
        )
    return module


def build_dataset(cfg: DictConfig, split: str, train: bool) -> SegDataset:
    """Dataset `split` of `cfg.dataset` with the train (`train=True`) or eval pipeline."""
    module = dataset_module(cfg)
    dataset = module.build(cfg.dataset, split, build_transform(cfg.dataset, train), int(cfg.get("seed", 0)))
    dataset.augment = train  # the eval pipeline is deterministic: it draws no seed from torch's RNG
    return dataset


def available_splits(cfg: DictConfig) -> list[str]:
    """Splits of `cfg.dataset` present on disk (with labels where the dataset has them)."""
    return list(dataset_module(cfg).available_splits(cfg.dataset))


def build_datamodule(cfg: DictConfig) -> SegDataModule:
    """The LightningDataModule for `cfg.dataset` (datasets are built in `setup()`)."""
    module = dataset_module(cfg)
    return SegDataModule(cfg, build_dataset, module.CLASSES, module.PALETTE)


__all__ = [
    "MEAN",
    "STD",
    "SegDataModule",
    "SegDataset",
    "available_splits",
    "build_datamodule",
    "build_dataset",
    "dataset_module",
]
