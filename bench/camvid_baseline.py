"""CamVid: rspnet (`experiment=camvid`, search -> macro -> train -> eval) vs a library baseline.

The baseline is MONAI's `BasicUNet` (2-D, library default widths, random init — no downloaded
weights; timm / segmentation-models-pytorch cannot be imported here, see docs/design.md),
trained by the same SegModule recipe (same data module, crop, batch, SGD + poly lr, epochs)
and evaluated by the same metric. Both runs get the same number of training epochs; rspnet
additionally spends its search epochs, and the table reports every run's wall time.

    python -m bench.camvid_baseline --root DIR --write   # DIR: CamVid in the SegNet layout
    python -m bench.camvid_baseline --quick          # smoke run on synthetic data (seconds)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, open_dict

from bench.common import REPO, add_write_arg, compose_cfg, device_line, md_table, write_section


def _cfg(out: Path, overrides: list[str]) -> DictConfig:
    return compose_cfg(*overrides, f"paths.output_dir={out}")


def run_rspnet(out: Path, overrides: list[str]) -> dict[str, Any]:
    """The whole rspnet pipeline (what `rspnet experiment=camvid ...` runs); its row."""
    from rspnet.stages.pipeline import run as run_pipeline

    run_pipeline(_cfg(out, ["stage=pipeline", *overrides]))
    return reuse_rspnet(out)


def reuse_rspnet(out: Path) -> dict[str, Any]:
    """The row of an rspnet run of this script (its pipeline.json / train.json); seconds = sum of the stages."""
    summary = json.loads((out / "pipeline.json").read_text())
    train = json.loads((out / "train" / "train.json").read_text())
    return {
        "model": "rspnet (searched, RSP, FCN head)",
        "miou": summary["miou"],
        "params": summary["params"],
        "train_epochs": train["epochs"],
        "seconds": sum(summary["seconds"].values()),
        "detail": summary["seconds"],
    }


def baseline_net(num_classes: int) -> torch.nn.Module:
    """MONAI BasicUNet with its default features (32, 32, 64, 128, 256, 32): the `net=monai_unet` entry."""
    from rspnet.models.nets import monai_unet

    return monai_unet(num_classes)


def run_baseline(out: Path, overrides: list[str], epochs: int, max_minutes: float | None = None) -> dict[str, Any]:
    """Train + evaluate the baseline with the rspnet SegModule recipe (only the network differs)."""
    from rspnet.data import build_datamodule
    from rspnet.lit.seg_module import SegModule
    from rspnet.utils.checkpoint import seg_meta
    from rspnet.utils.trainer import build_trainer

    cfg = _cfg(out, ["stage=train", *overrides])
    with open_dict(cfg):
        cfg.trainer.max_epochs = epochs
        if max_minutes:  # equal wall-clock budget: stop when the rspnet run's time is used up
            cfg.trainer.max_time = {"minutes": float(max_minutes)}
    dm = build_datamodule(cfg)
    dm.setup("fit")
    net = baseline_net(dm.num_classes)  # same recipe, different network
    meta = seg_meta(cfg, net, dm.num_classes, classes=list(dm.classes), palette=list(dm.palette))
    module = SegModule(net, cfg.train, int(cfg.dataset.get("ignore_index", 255)), meta)
    params = meta["params"]
    t0 = time.perf_counter()
    trainer = build_trainer(cfg, out, False, enable_checkpointing=False)
    trainer.fit(module, datamodule=dm)
    trainer.test(module, datamodule=dm, verbose=False)
    row = {"model": "MONAI BasicUNet (library default, random init)", "miou": float(module.test_result["miou"])}
    return row | {
        "params": params,
        "train_epochs": trainer.current_epoch,
        "seconds": time.perf_counter() - t0,
        "detail": {},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=None, help="CamVid root (SegNet layout); required unless --quick")
    ap.add_argument("--out", type=Path, default=REPO / "outputs" / "bench_camvid")
    ap.add_argument("--train-epochs", type=int, default=None, help="override stage.train_epochs of experiment=camvid")
    ap.add_argument("--search-epochs", type=int, default=None, help="override both search stages' epochs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--same-time", action="store_true", help="baseline budget: rspnet's whole wall time, not epochs")
    ap.add_argument("--reuse-rspnet", action="store_true", help="read OUT/rspnet/pipeline.json instead of rerunning")
    ap.add_argument("--quick", action="store_true", help="tiny smoke run on synthetic data")
    ap.add_argument("extra", nargs="*", help="more Hydra overrides for both runs")
    add_write_arg(ap)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        over = ["dataset=synthetic", "model.search_layers=2", "model.layers=2", "model.cells_per_node=1",
                "dataset.num_train=8", "dataset.num_val=4", "dataset.image_size=[32,64]", "dataset.crop_size=[32,64]",
                "dataset.batch_size=2", "dataset.val_batch_size=2", "trainer.limit_train_batches=2",
                "trainer.limit_val_batches=1", "trainer.enable_progress_bar=false"]  # fmt: skip
        epochs, search = 1, 1
    else:
        if not args.root or not Path(args.root).is_dir():
            print(f"camvid_baseline: CamVid not found at {args.root}; pass --root", file=sys.stderr)
            return 2
        over = ["experiment=camvid", f"dataset.root={Path(args.root).resolve()}", "trainer.enable_progress_bar=false"]
        probe = compose_cfg(*over)
        epochs = args.train_epochs or int(probe.stage.train_epochs)
        search = args.search_epochs
    over += list(args.extra)
    pipe = [f"stage.train_epochs={epochs}"]
    if search is not None:
        pipe += [f"stage.cell_search_epochs={search}", f"stage.macro_search_epochs={search}"]
    started = device_line(threads=args.threads)
    rspnet = reuse_rspnet(args.out / "rspnet") if args.reuse_rspnet else run_rspnet(args.out / "rspnet", over + pipe)
    budget = rspnet["seconds"] / 60 if args.same_time else None
    rows = [rspnet, run_baseline(args.out / "baseline", over, 10_000 if budget else epochs, budget)]
    table = md_table(
        ["model", "val mIoU (%)", "params (M)", "train epochs", "wall time (min)"],
        [[r["model"], 100 * r["miou"], r["params"] / 1e6, r["train_epochs"], r["seconds"] / 60] for r in rows],
    )
    cmd = "python -m bench.camvid_baseline " + " ".join(argv if argv is not None else sys.argv[1:])
    body = (
        f"## CamVid: rspnet vs library baseline (issue 6)\n\n{started}\n\nCommand: `{cmd}`\n\n{table}\n\n"
        f"rspnet stage times (s): {rows[0]['detail']}. Same data module, crop, batch, optimiser, "
        "schedule for both; "
        + (
            "the baseline trained for the rspnet run's whole wall time (search included), "
            "its epochs are what fitted (its poly lr schedule is laid over the epoch cap, so its lr "
            "barely decays)."
            if args.same_time
            else "same training epochs; rspnet's wall time includes its two search stages."
        )
    )
    if args.reuse_rspnet:
        body += f" The rspnet row is read from {args.out / 'rspnet'} (an earlier run of this script)."
    print(body)
    if args.write and not args.quick:
        write_section(args.write, "camvid_baseline", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
