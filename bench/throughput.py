"""Images/s of the data and inference paths around the derived network.

    python -m bench.throughput --data [--camvid-root DIR] [--workers 0 2] [--write]   # loader vs train step
    python -m bench.throughput --infer [--sw-batch 4] [--batch 4] [--write]           # eval slide / predict

--data: the training `DataLoader` (`SegDataModule`, augmentations included, first batch excluded)
per worker count, against one training step (forward, CE, backward, SGD) of the tiny derived net
(paper_like genotype, `default_macro`, FCN head) at the loader's batch shape, 1 thread, wall clock
(target, issue 9: loader >= 2x the step rate). CamVid is measured when `--camvid-root` is given.
--infer: the tiny paper_like net (random weights) at CamVid (360x480, window 240x320) and
Cityscapes (1024x2048, window 512x1024) sizes; eval `inference=slide` one image at a time with
1 vs `--sw-batch` windows per call, and `Segmenter.predict` with 1 vs `--batch` images per call;
arms alternate per repeat; wall-clock images/s first, process CPU s/image beside.
"""

from __future__ import annotations

import argparse
import functools
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench import common

SIZES = {"camvid": ((360, 480), (240, 320)), "cityscapes": ((1024, 2048), (512, 1024))}
QUICK = {"camvid": ((48, 64), (32, 48)), "cityscapes": ((64, 128), (32, 64))}


def data_overrides(name: str, root: Path | None, quick: bool) -> list[str]:
    """Hydra overrides selecting dataset `name` (and its root; a small synthetic set when quick)."""
    ov = [f"dataset={name}", "model=tiny", "rsp=on", *([f"dataset.root={root}"] if root else [])]
    if quick:
        ov += ["dataset.batch_size=2", "dataset.crop_size=[32,64]", "dataset.num_train=8", "dataset.image_size=[32,64]"]
    return ov


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Loader images/s (spec['workers'] set) or training steps/s of the tiny derived net (workers None)."""
    import torch.nn.functional as F
    from omegaconf import open_dict

    from rspnet.architecture import load_architecture
    from rspnet.data import build_datamodule
    from rspnet.models.derived import DerivedNet

    cfg = common.compose_cfg(*spec["overrides"])
    b = int(cfg.dataset.batch_size)
    if spec["workers"] is None:
        torch.manual_seed(0)
        net = DerivedNet.from_cfg(cfg, *load_architecture(cfg), int(cfg.dataset.num_classes))
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        x = torch.randn(b, 3, *cfg.dataset.crop_size)
        y = torch.randint(0, int(cfg.dataset.num_classes), (b, *cfg.dataset.crop_size))

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x)["out"], y, ignore_index=255).backward()
            opt.step()

        wall = common.median([w for w, _ in common.time_calls(step, spec["steps"], 1)])  # wall, like the loader
        return {"steps_per_s": 1.0 / wall, "batch": b, "crop": list(cfg.dataset.crop_size)}
    with open_dict(cfg):
        cfg.dataset.num_workers = spec["workers"]
    dm = build_datamodule(cfg)
    dm.setup("fit")
    n, t0 = 0, 0.0
    while n < spec["batches"]:  # cycle the (small) train split until `batches` batches were timed
        for _ in dm.train_dataloader():
            if t0 == 0.0:
                t0 = time.perf_counter()  # after the first batch: excludes worker start-up
                continue
            n += 1
            if n >= spec["batches"]:
                break
    return {"images_per_s": n * b / (time.perf_counter() - t0)}


def run_data(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Rows (dataset, workers, loader images/s, step images/s, ratio); CamVid only with --camvid-root."""
    rows: list[dict[str, Any]] = []
    for name in ["synthetic"] if args.quick else ["synthetic", "camvid"]:
        if name == "camvid" and not (args.camvid_root and (args.camvid_root / "train").is_dir()):
            rows.append({"dataset": name, "note": "skipped: pass --camvid-root DIR (SegNet layout)"})
            continue
        ov = data_overrides(name, args.camvid_root if name == "camvid" else None, args.quick)
        spec = {"overrides": ov, "workers": None, "steps": args.steps}
        step = common.run_worker("bench.throughput", spec, inprocess=args.quick)
        for workers in args.workers:
            spec = {"overrides": ov, "workers": workers, "batches": args.batches}
            load = common.run_worker("bench.throughput", spec, inprocess=args.quick)["images_per_s"]
            ips = step["steps_per_s"] * step["batch"]
            row = {"dataset": name, "workers": workers, "batch": step["batch"], "crop": step["crop"]}
            rows.append(row | {"loader_ips": load, "step_ips": ips, "ratio": load / ips})
    table = [[r["dataset"], "-", "-", "-", "-", r["note"]] if "note" in r else
             [r["dataset"], r["workers"], f"{r['batch']} x {r['crop'][0]}x{r['crop'][1]}",
              *(f"{r[k]:.1f}" for k in ("loader_ips", "step_ips", "ratio"))] for r in rows]  # fmt: skip
    common.publish(
        args, "data_throughput", "Data pipeline: loader throughput vs training step rate", "bench.throughput",
        "Loader: the training `DataLoader` (random scale 0.5-2, pad + crop, flip, colour jitter, normalise) over",
        f"{args.batches} batches after the first. Step: forward + CE + backward + SGD of the tiny derived net on",
        "random tensors of the same batch shape, 1 thread. Target (issue 9): loader >= 2x the step rate. With",
        "0 workers the loader runs in the training process; with workers it competes for the cores.", "",
        common.md_table("dataset | loader workers | batch | loader images/s | train-step images/s | loader / step",
                        table),
    )  # fmt: skip
    return rows


class Counted:
    """A network wrapper counting its calls (the table's network calls per image)."""

    def __init__(self, net: Any) -> None:
        self.net, self.calls = net, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.net, name)

    def __call__(self, x: torch.Tensor) -> Any:
        self.calls += 1
        return self.net(x)


def windows(size: tuple[int, int], crop: tuple[int, int]) -> int:
    """Windows of stage=eval's slide at the default 2/3 stride (network calls per image with sw_batch 1)."""
    from rspnet.inference import _starts

    return math.prod(len(_starts(s, c, max(1, 2 * c // 3))) for s, c in zip(size, crop))


def run_infer(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per (size, path, arm): median images/s, CPU s/image, network calls per image."""
    from rspnet.api import Model, build_zoo_net, zoo_entries
    from rspnet.data.images import to_tensor
    from rspnet.segmenter import Segmenter

    torch.manual_seed(0)
    net, _ = build_zoo_net(zoo_entries()[f"paper_like-{args.model}"])
    labels = [str(i) for i in range(19)]
    model = Model(net.eval().to(args.device), labels, [[0, 0, 0]] * 19, args.model, "zoo", trained=False)
    counter = model.net = Counted(model.net)
    rng = np.random.default_rng(0)
    rows = []
    for name, (size, crop) in (QUICK if args.quick else SIZES).items():
        images = [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(args.images)]
        seg = functools.partial(Segmenter, model, device=args.device)
        arms = {("eval slide", "before (sw_batch 1)"): seg("slide", batch_size=1, crop=crop, sw_batch=1),
                ("eval slide", f"after (sw_batch {args.sw_batch})"): seg("slide", batch_size=1, crop=crop,
                                                                         sw_batch=args.sw_batch),
                ("predict whole", "before (batch 1)"): seg("whole", batch_size=1),
                ("predict whole", f"after (batch {args.batch})"): seg("whole", batch_size=args.batch)}  # fmt: skip
        one = to_tensor(images[0])[None]  # eval: one image at a time (stage=eval at Cityscapes size); predict: all
        jobs = {key: ((lambda s=seg, x=one: s.scores(x).argmax(1)), 1) if key[0] == "eval slide"
                else ((lambda s=seg, ims=images: s.predict(ims)), len(images)) for key, seg in arms.items()}  # fmt: skip
        for fn, _ in jobs.values():
            fn()  # warm-up (allocator, oneDNN/cuDNN kernel choice), untimed
        times: dict[tuple[str, str], list[tuple[float, float]]] = {k: [] for k in jobs}
        per_image: dict[tuple[str, str], float] = {}
        for _ in range(args.repeats):
            for key, (fn, n) in jobs.items():  # alternate the arms: a neighbour's load hits them alike
                counter.calls = 0
                ((wall, cpu),) = common.time_calls(fn, 1, 0, args.device)
                times[key].append((n / wall, cpu / n))
                per_image[key] = counter.calls / n
        for (path, arm), v in times.items():
            rate, cpu = (common.median(x) for x in zip(*v))
            row = {
                "size": name,
                "image": list(size),
                "path": path,
                "arm": arm,
                "calls_per_image": per_image[(path, arm)],
            }
            rows.append(row | {"images_per_s": rate, "cpu_s_per_image": cpu})
    before = {(r["size"], r["path"]): r["images_per_s"] for r in rows if r["arm"].startswith("before")}
    table = [[r["size"], f"{r['image'][0]}x{r['image'][1]}", r["path"], r["arm"], f"{r['images_per_s']:.3f}",
              f"{r['cpu_s_per_image']:.3f}", f"{r['calls_per_image']:g}",
              f"{r['images_per_s'] / before[(r['size'], r['path'])]:.2f}"] for r in rows]  # fmt: skip
    common.publish(
        args, "infer_throughput", "Eval/predict throughput: window batching and batched predict", "bench.throughput",
        f"Model: the `{args.model}` paper_like net (FCN head, 19 classes, random weights) on {args.device};",
        f"median of {args.repeats} alternating repeats; predict over {args.images} images.", "",
        common.md_table("size | image | path | arm | images/s (wall) | CPU s / image | network calls / image | "
                        "speed-up", table), threads=torch.get_num_threads(),
    )  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> Any:
    """Parse arguments, measure, print (and optionally write) the table."""
    ap, argv = common.parser(__doc__, argv, worker)
    if ap is None:
        return []
    ap.add_argument("--data", action="store_true", help="loader images/s vs the training step rate")
    ap.add_argument("--infer", action="store_true", help="eval slide / predict images/s, before vs after batching")
    ap.add_argument("--camvid-root", type=Path, default=None, help="--data: CamVid (SegNet layout); absent: skipped")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--model", default="tiny", choices=["tiny", "small", "paper"])
    ap.add_argument("--device", default=common.cuda_device())
    ap.add_argument("--sw-batch", type=int, default=4)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="--infer: CPU torch threads (default: torch's)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one repeat, in-process (seconds): the tests")
    args = common.parse(ap, argv)
    if args.data == args.infer:
        ap.error("pass exactly one of --data, --infer")
    torch.set_num_threads(1 if args.data else args.threads or torch.get_num_threads())
    if args.quick:
        args.workers, args.batches, args.steps, args.repeats = [0], 2, 1, 1
        args.images = min(args.images, 2 * args.batch)
    return run_data(args) if args.data else run_infer(args)


if __name__ == "__main__":
    main()
