"""Data pipeline: images/s of the training loader vs the training step rate at the same batch.

    .venv/bin/python -m bench.data_throughput [--workers 0 2] [--batches 12] [--quick] [--write]

Loader: `SegDataModule.train_dataloader()` of the dataset (augmentations included), timed
from the second batch on (worker start-up excluded), for each `--workers` count. Step: one
training step of the derived network (`model=tiny`, RSP on, paper_like genotype,
`default_macro`, FCN head) — forward, CE loss, backward, SGD — on random tensors of the
loader's batch shape, 1 torch thread. The loader must not be the bottleneck (issue 9 target:
loader >= 2x the step rate on 2 cores). CamVid is read from `--camvid-root` (default
../shared/data/camvid next to the repo) and skipped with a note when absent.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

from bench import common

NAME = "data_throughput"
CAMVID = Path(__file__).resolve().parents[2] / "shared" / "data" / "camvid"  # ../shared/data/camvid


def dataset_overrides(name: str, camvid_root: Path, quick: bool) -> list[str]:
    """Hydra overrides selecting dataset `name` (and its root; smaller synthetic set when quick)."""
    ov = [f"dataset={name}", "model=tiny", "rsp=on"]
    if name == "camvid":
        ov.append(f"dataset.root={camvid_root}")
    if quick:
        ov += ["dataset.batch_size=2", "dataset.crop_size=[32,64]"]
        if name == "synthetic":
            ov += ["dataset.num_train=8", "dataset.image_size=[32,64]"]
    return ov


def loader_rate(cfg: Any, workers: int, batches: int) -> float:
    """Images/s of the train loader with `workers` processes (first batch excluded)."""
    from omegaconf import open_dict

    from rspnet.data import build_datamodule

    with open_dict(cfg):
        cfg.dataset.num_workers = workers
    dm = build_datamodule(cfg)
    dm.setup("fit")
    n, t0, it = 0, 0.0, None
    while n < batches:  # cycle the (small) train split until `batches` batches were timed
        it = iter(dm.train_dataloader())
        for x, _ in it:
            if t0 == 0.0:
                t0 = time.perf_counter()  # after the first batch: excludes worker start-up
                continue
            n += 1
            if n >= batches:
                break
    images = n * int(cfg.dataset.batch_size)
    return images / (time.perf_counter() - t0)


def step_rate(cfg: Any, steps: int) -> float:
    """Training steps/s of the tiny derived network at the loader's batch shape."""
    import torch.nn.functional as F

    from rspnet.models.derived import DerivedNet
    from rspnet.stages.summary import load_architecture

    torch.manual_seed(0)
    net = DerivedNet.from_cfg(cfg, *load_architecture(cfg), int(cfg.dataset.num_classes))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    b, (h, w) = int(cfg.dataset.batch_size), (int(v) for v in cfg.dataset.crop_size)
    x, y = torch.randn(b, 3, h, w), torch.randint(0, int(cfg.dataset.num_classes), (b, h, w))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x)["out"], y, ignore_index=255).backward()
        opt.step()

    return 1.0 / common.median(common.time_calls(step, steps, 1, clock=time.perf_counter))  # wall, like the loader


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Loader images/s (spec['workers'] set) or training steps/s (spec['workers'] is None)."""
    cfg = common.compose_cfg(*spec["overrides"])
    if spec["workers"] is None:
        return {"steps_per_s": step_rate(cfg, spec["steps"]), "batch": int(cfg.dataset.batch_size),
                "crop": list(cfg.dataset.crop_size)}
    return {"images_per_s": loader_rate(cfg, spec["workers"], spec["batches"])}


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Rows (dataset, workers, loader images/s, step images/s, ratio); skipped datasets get a note."""
    rows = []
    for name in args.datasets:
        if name == "camvid" and not (args.camvid_root / "train").is_dir():
            rows.append({"dataset": name, "note": f"skipped: {args.camvid_root} not found"})
            continue
        ov = dataset_overrides(name, args.camvid_root, args.quick)
        step = common.run_worker("bench.data_throughput", {"overrides": ov, "workers": None, "steps": args.steps},
                                 inprocess=args.quick)
        step_ips = step["steps_per_s"] * step["batch"]
        for workers in args.workers:
            spec = {"overrides": ov, "workers": workers, "batches": args.batches}
            load = common.run_worker("bench.data_throughput", spec, inprocess=args.quick)
            rows.append({"dataset": name, "workers": workers, "batch": step["batch"], "crop": step["crop"],
                         "loader_ips": load["images_per_s"], "step_ips": step_ips,
                         "ratio": load["images_per_s"] / step_ips})
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown table; target: loader / step >= 2."""
    out = []
    for r in rows:
        if "note" in r:
            out.append([r["dataset"], "-", "-", "-", "-", r["note"]])
            continue
        out.append([r["dataset"], r["workers"], f"{r['batch']} x {r['crop'][0]}x{r['crop'][1]}",
                    f"{r['loader_ips']:.1f}", f"{r['step_ips']:.1f}", f"{r['ratio']:.1f}"])
    return common.md_table(["dataset", "loader workers", "batch", "loader images/s", "train-step images/s",
                            "loader / step"], out)


def section(rows: list[dict[str, Any]], args: argparse.Namespace, command: str) -> str:
    """The docs/benchmarks.md section."""
    return "\n".join([
        "## Data pipeline: loader throughput vs training step rate",
        "",
        common.device_line(threads=1),
        f"Command: `{command}`",
        "",
        "Loader: the training `DataLoader` (random scale 0.5-2, pad + crop, flip, colour jitter,",
        f"normalise) over {args.batches} batches after the first. Step: forward + CE + backward + SGD of",
        "the tiny derived net (RSP on, FCN head) on random tensors of the same batch shape, 1 thread.",
        "Target (issue 9): loader >= 2x the step rate. With 0 workers the loader runs in the training",
        "process (the two rates add up as 1/(1/L + 1/S)); with workers it runs beside it and, on a",
        "2-core machine, competes with it for the cores.",
        "",
        table(rows),
    ])


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Parse arguments, measure, print (and optionally write) the table."""
    argv = sys.argv[1:] if argv is None else argv
    if common.worker_main(argv, worker):
        return []
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["synthetic", "camvid"])
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--camvid-root", type=Path, default=CAMVID)
    ap.add_argument("--quick", action="store_true", help="synthetic only, tiny sizes, in-process (seconds)")
    common.add_write_arg(ap)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.quick:
        args.datasets, args.workers, args.batches, args.steps = ["synthetic"], [0], 2, 1
    rows = run(args)
    print(table(rows))
    if args.write:
        common.write_section(args.write, NAME, section(rows, args, common.command_line("bench.data_throughput", argv)))
    return rows


if __name__ == "__main__":
    main()
