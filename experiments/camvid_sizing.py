"""Estimate the wall time of `experiment=camvid` from measured step costs (no data needed).

    python -m experiments.camvid_sizing [--overhead 1.5] [hydra overrides...]

Times one forward+backward of each network the recipe trains (1 CPU thread, process time,
best of 3) at the recipe's crop and batch size, multiplies by the steps per epoch of the
SegNet CamVid split (367 train / 101 val images) and the recipe's epochs, and scales by
`--overhead` for data loading, logging, pictures and checkpoints. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import rspnet.cli  # noqa: F401  (registers the config resolvers)

REPO = Path(__file__).resolve().parents[1]
TRAIN_IMAGES, VAL_IMAGES = 367, 101  # SegNet CamVid split (../shared/data/camvid/README.txt)


def step_seconds(net: torch.nn.Module, batch: int, hw: tuple[int, int], classes: int, repeats: int = 3) -> float:
    """Best-of-`repeats` process time of one forward+backward (an SGD step adds little)."""
    x, y = torch.randn(batch, 3, *hw), torch.randint(0, classes, (batch, *hw))
    best = math.inf
    for _ in range(repeats):
        t0 = time.process_time()
        out = net(x)
        F.cross_entropy(out["out"] if isinstance(out, dict) else out, y).backward()
        best = min(best, time.process_time() - t0)
    return best


def step_seconds_eval(net: torch.nn.Module, batch: int, hw: tuple[int, int]) -> float:
    """Process time of one validation forward (whole image)."""
    x = torch.randn(batch, 3, *hw)
    t0 = time.process_time()
    net(x)
    return time.process_time() - t0


def estimate(cfg: DictConfig, overhead: float) -> list[tuple[str, int, float, float]]:
    """(stage, epochs, seconds per epoch, total seconds) for the pipeline of `cfg`."""
    from rspnet.genotype import Genotype
    from rspnet.models.derived import build_derived, default_macro
    from rspnet.models.macro_supernet import MacroSupernet
    from rspnet.models.supernet import CellSupernet

    k, b, hw = int(cfg.dataset.num_classes), int(cfg.dataset.batch_size), tuple(cfg.dataset.crop_size)
    genotype = Genotype.load(REPO / "experiments" / "genotypes" / "paper_like.json")
    half = TRAIN_IMAGES // 2 // b  # search: weight and arch halves, one step of each per batch
    val = math.ceil(VAL_IMAGES / int(cfg.dataset.val_batch_size))
    derived = build_derived(cfg, genotype, default_macro(cfg), k)
    with torch.no_grad():
        derived.eval()
        val_s = step_seconds_eval(derived, int(cfg.dataset.val_batch_size), hw)
    derived.train()
    rows = []
    for name, net, steps, per_step, epochs in (
        ("cell_search", CellSupernet.from_cfg(cfg, k), half, 2, cfg.stage.cell_search_epochs),
        ("macro_search", MacroSupernet.from_cfg(cfg, genotype, k), half, 2, cfg.stage.macro_search_epochs),
        ("train", derived, TRAIN_IMAGES // b, 1, cfg.stage.train_epochs),
    ):
        epoch_s = (steps * per_step * step_seconds(net, b, hw, k) + val * val_s) * overhead
        rows.append((name, int(epochs), epoch_s, epoch_s * int(epochs)))
    rows.append(("eval", 1, val * val_s * overhead, val * val_s * overhead))
    return rows


def main() -> None:
    """Print the estimate as a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--overhead", type=float, default=1.5, help="factor for data loading, logging, pictures")
    parser.add_argument("overrides", nargs="*", help="hydra overrides on top of experiment=camvid")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["experiment=camvid", *args.overrides])
    rows = estimate(cfg, args.overhead)
    print(f"crop {list(cfg.dataset.crop_size)}, batch {cfg.dataset.batch_size}, model={cfg.model.name}, "
          f"1 CPU thread, overhead x{args.overhead}, torch {torch.__version__}\n")
    print("| stage | epochs | s/epoch | total (min) |\n|---|---|---|---|")
    for name, epochs, per_epoch, total in rows:
        print(f"| {name} | {epochs} | {per_epoch:.0f} | {total / 60:.1f} |")
    print(f"| **all** | | | **{sum(r[3] for r in rows) / 60:.0f}** |")


if __name__ == "__main__":
    main()
