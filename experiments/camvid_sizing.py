"""Estimate the wall time of `experiment=camvid` from measured step costs (no data needed).

    python -m experiments.camvid_sizing [--overhead 1.5] [--threads 1] [hydra overrides...]
    python -m experiments.camvid_sizing --compare tiny:model=tiny small:model=cpu_small \
        crop180:dataset.crop_size=[180,240] --budget-min 60

Times one forward+backward of each network the recipe trains (`--threads` CPU threads, process
time, best of 3) at the recipe's crop and batch size, multiplies by the steps per epoch of the
SegNet CamVid split (367 train / 101 val images; the held-out selection slice of train,
`train.holdout_fraction`, is validated on and not trained on) and the recipe's epochs, and
scales by `--overhead` for data loading, logging, pictures and checkpoints. Prints a markdown
table. `--compare NAME:OVERRIDE[,OVERRIDE...]` prints one row per variant instead (the sizing
trade-offs: width/depth preset vs crop/batch vs epochs): params, seconds per epoch of every
stage, the total, and how many training epochs fit in `--budget-min` after the searches.

    python -m experiments.camvid_sizing --measured RUN [--measured RUN] [--budget-min 60] [hydra overrides...]

sizes from a short run instead of a model: RUN is a pipeline's (or one stage's) output folder; each
stage's wall time per epoch is the median of its curves.json `epoch_wall_s` (measure >= 3 epochs: the
first epoch's start-up and the last one's end-of-fit work, e.g. deriving the genotype, are then outliers;
they and everything outside the epochs, from its done.json `wall_s`, count as the stage's fixed cost), and
the stage is projected to the epochs of `experiment=camvid` + the overrides. Prints, per RUN, the
projected wall time and the most training epochs that fit in `--budget-min`.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from rspnet.composition import compose
from rspnet.inference import main_logits

REPO = Path(__file__).resolve().parents[1]
TRAIN_IMAGES, VAL_IMAGES = 367, 101  # SegNet CamVid split (../shared/data/camvid/README.txt)
SEQUENCE_IMAGES = {"0001TP": 62, "0006R0": 101, "0016E5": 204}  # train frames per sequence (same README)


def step_seconds(net: torch.nn.Module, batch: int, hw: tuple[int, int], classes: int, repeats: int = 3) -> float:
    """Best-of-`repeats` process time of one forward+backward (an SGD step adds little)."""
    x, y = torch.randn(batch, 3, *hw), torch.randint(0, classes, (batch, *hw))
    best = math.inf
    for _ in range(repeats):
        t0 = time.process_time()
        F.cross_entropy(main_logits(net(x)), y).backward()
        best = min(best, time.process_time() - t0)
    return best


def step_seconds_eval(net: torch.nn.Module, batch: int, hw: tuple[int, int]) -> float:
    """Process time of one validation forward (whole image)."""
    x = torch.randn(batch, 3, *hw)
    t0 = time.process_time()
    net(x)
    return time.process_time() - t0


def split_sizes(cfg: DictConfig) -> tuple[int, int]:
    """(training images, images validated on per epoch) under `train.select` (rspnet.data.selection)."""
    from rspnet.data.selection import Selection

    sel = Selection.from_cfg(cfg)
    hold = min(max(round(TRAIN_IMAGES * sel.fraction), 1), TRAIN_IMAGES - 1) if sel.holds_out else 0
    if sel.sequences:  # train.holdout_sequences: whole sequences (an unknown name counts as none)
        hold = sum(SEQUENCE_IMAGES.get(name, 0) for name in sel.sequences)
    return TRAIN_IMAGES - hold, hold if sel.holds_out else (VAL_IMAGES if sel.select == "val" else 0)


def estimate(cfg: DictConfig, overhead: float) -> list[tuple[str, int, float, float]]:
    """(stage, epochs, seconds per epoch, total seconds) for the pipeline of `cfg`."""
    from rspnet.genotype import Genotype
    from rspnet.models.derived import DerivedNet, default_macro
    from rspnet.models.macro_supernet import MacroSupernet
    from rspnet.models.supernet import CellSupernet

    k, b, hw = int(cfg.dataset.num_classes), int(cfg.dataset.batch_size), tuple(cfg.dataset.crop_size)
    genotype = Genotype.load(REPO / "experiments" / "genotypes" / "paper_like.json")
    train_images, val_images = split_sizes(cfg)
    half = train_images // 2 // b  # search: weight and arch halves, one step of each per batch
    val = math.ceil(val_images / int(cfg.dataset.val_batch_size))
    derived = DerivedNet.from_cfg(cfg, genotype, default_macro(cfg), k)
    with torch.no_grad():
        derived.eval()
        val_s = step_seconds_eval(derived, int(cfg.dataset.val_batch_size), hw)
    derived.train()
    rows = []
    for name, net, steps, per_step, epochs in (
        ("cell_search", CellSupernet.from_cfg(cfg, k), half, 2, cfg.stage.cell_search_epochs),
        ("macro_search", MacroSupernet.from_cfg(cfg, genotype, k), half, 2, cfg.stage.macro_search_epochs),
        ("train", derived, train_images // b, 1, cfg.stage.train_epochs),
    ):
        epoch_s = (steps * per_step * step_seconds(net, b, hw, k) + val * val_s) * overhead
        rows.append((name, int(epochs), epoch_s, epoch_s * int(epochs)))
    report = math.ceil(VAL_IMAGES / int(cfg.dataset.val_batch_size))  # val, once, by stage=eval
    rows.append(("eval", 1, report * val_s * overhead, report * val_s * overhead))
    return rows


def params_of(cfg: DictConfig) -> int:
    """Parameters of the derived network (paper_like genotype, default macro) at `cfg`."""
    from rspnet.architecture import load_architecture
    from rspnet.models.cost import summarize

    return int(summarize(cfg, *load_architecture(cfg), flops=False)["params"])


def compare_row(name: str, cfg: DictConfig, overhead: float, budget_min: float) -> str:
    """One markdown row of the --compare table."""
    rows = {r[0]: r for r in estimate(cfg, overhead)}
    search = rows["cell_search"][3] + rows["macro_search"][3] + rows["eval"][3]
    fit = max(0, int((budget_min * 60 - search) // rows["train"][2]))
    total = sum(r[3] for r in rows.values())
    return (
        f"| {name} | {params_of(cfg) / 1e6:.3f} | {list(cfg.dataset.crop_size)} x {cfg.dataset.batch_size} | "
        f"{rows['cell_search'][2]:.0f} | {rows['macro_search'][2]:.0f} | {rows['train'][2]:.0f} | "
        f"{rows['cell_search'][1]}/{rows['macro_search'][1]}/{rows['train'][1]} | {total / 60:.1f} | {fit} |"
    )


STAGE_EPOCHS = {"cell_search": "cell_search_epochs", "macro_search": "macro_search_epochs", "train": "train_epochs"}


def measured_rates(run: Path) -> list[tuple[str, int, float, float]]:
    """(stage, measured epochs, wall s per epoch, fixed s) of each finished stage under `run` (a pipeline's
    folder, or one stage's). Fixed: the stage's wall minus epochs x the median epoch."""
    run = Path(run)
    dirs = [run / name for name in (*STAGE_EPOCHS, "eval")]
    dirs = [d for d in dirs if (d / "done.json").is_file()] or ([run] if (run / "done.json").is_file() else [])
    if not dirs:
        raise SystemExit(f"--measured {run}: no done.json there or in its stage folders; run the pipeline first")
    rows = []
    for d in dirs:
        done = json.loads((d / "done.json").read_text())
        stage, wall = str(done.get("stage", d.name)), float(done["wall_s"])
        curves = d / "curves.json"
        epoch_rows = json.loads(curves.read_text())["rows"] if curves.is_file() else []
        walls = [float(r["epoch_wall_s"]) for r in epoch_rows if "epoch_wall_s" in r]
        if stage in STAGE_EPOCHS and not walls:
            raise SystemExit(f"--measured {d}: curves.json has no epoch_wall_s (a run of an older version?); rerun it")
        per_epoch = statistics.median(walls) if walls else 0.0
        rows.append((stage, len(walls), per_epoch, wall - len(walls) * per_epoch))
    return rows


def measured_table(run: Path, cfg: DictConfig, budget_min: float) -> str:
    """Markdown: the measured rates of `run` projected to `cfg`'s epochs, and the training epochs that fit."""
    rates = measured_rates(run)
    lines = [
        f"`{run}` projected to the epochs of the given config:\n",
        "| stage | measured epochs | wall s/epoch | fixed s | epochs | projected (min) |",
        "|---|---|---|---|---|---|",
    ]
    total = other = train_epoch = 0.0
    for stage, n, per_epoch, fixed in rates:
        epochs = int(cfg.stage[STAGE_EPOCHS[stage]]) if stage in STAGE_EPOCHS else 1
        projected = fixed + per_epoch * epochs  # eval: no epochs measured, its fixed cost only
        total += projected
        other += fixed if stage == "train" else projected
        train_epoch = per_epoch if stage == "train" else train_epoch
        lines.append(f"| {stage} | {n} | {per_epoch:.1f} | {fixed:.0f} | {epochs} | {projected / 60:.1f} |")
    lines.append(f"| **all** | | | | | **{total / 60:.1f}** |")
    if train_epoch > 0:
        fit = max(0, int((budget_min * 60 - other) // train_epoch))
        lines.append(f"\nTraining epochs that fit in {budget_min:g} min after the other stages: **{fit}**.")
    return "\n".join(lines)


def parse_variant(text: str) -> tuple[str, list[str]]:
    """'NAME:a=1,b=2' -> ('NAME', ['a=1', 'b=2']); commas inside [...] stay in one override."""
    name, _, rest = text.partition(":")
    overrides, depth, cur = [], 0, ""
    for ch in rest:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            overrides.append(cur)
            cur = ""
        else:
            cur += ch
    return name, [o for o in [*overrides, cur] if o]


def main(argv: list[str] | None = None) -> None:
    """Print the estimate as a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--overhead", type=float, default=1.5, help="factor for data loading, logging, pictures")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads while timing")
    parser.add_argument(
        "--compare",
        nargs="+",
        metavar="NAME:OVERRIDES",
        default=None,
        help="variants to compare, each NAME:override[,override...] on top of the overrides",
    )
    parser.add_argument("--budget-min", type=float, default=60.0, help="wall budget for the fit column of --compare")
    parser.add_argument(
        "--measured", action="append", type=Path, metavar="RUN", help="size from this finished run's times (repeatable)"
    )
    parser.add_argument("overrides", nargs="*", help="hydra overrides on top of experiment=camvid")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = compose("experiment=camvid", *args.overrides)
    if args.measured:
        print("\n\n".join(measured_table(run, cfg, args.budget_min) for run in args.measured))
        return
    variants = [
        (n, compose("experiment=camvid", *args.overrides, *o)) for n, o in map(parse_variant, args.compare or [])
    ]
    if variants:
        print(
            f"{args.threads} CPU thread(s), overhead x{args.overhead}, budget {args.budget_min:g} min, "
            f"torch {torch.__version__}\n"
        )
        print(
            "| variant | params (M) | crop x batch | cell s/ep | macro s/ep | train s/ep | epochs cell/macro/train "
            "| total (min) | train epochs in budget |\n|---|---|---|---|---|---|---|---|---|"
        )
        for name, vcfg in variants:
            print(compare_row(name, vcfg, args.overhead, args.budget_min))
        return
    rows = estimate(cfg, args.overhead)
    print(
        f"crop {list(cfg.dataset.crop_size)}, batch {cfg.dataset.batch_size}, model={cfg.model.name}, "
        f"{args.threads} CPU thread(s), overhead x{args.overhead}, torch {torch.__version__}\n"
    )
    print("| stage | epochs | s/epoch | total (min) |\n|---|---|---|---|")
    for name, epochs, per_epoch, total in rows:
        print(f"| {name} | {epochs} | {per_epoch:.0f} | {total / 60:.1f} |")
    print(f"| **all** | | | **{sum(r[3] for r in rows) / 60:.0f}** |")


if __name__ == "__main__":
    main()
