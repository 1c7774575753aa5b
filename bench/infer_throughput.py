"""Eval/predict throughput: images/s before/after window batching (`sw_batch`) and batched predict.

    .venv/bin/python -m bench.infer_throughput [--model tiny] [--sw-batch 4] [--batch 4] [--repeats 3] [--write]

Two paths at CamVid (360x480, window = CamVid's crop 240x320) and Cityscapes (1024x2048, window
512x1024) image sizes, on random images with the tiny derived net (paper_like genotype,
`default_macro`, FCN head, random weights — speed does not depend on them):

* **eval, inference=slide**: one image at a time (stage=eval's `val_batch_size` 1 at Cityscapes
  size), windows every 2/3 of the window; *before* = one window per network call
  (`train.sw_batch=1`, the old loop), *after* = `--sw-batch` windows per call.
* **predict, inference=whole**: `Segmenter.predict` over `--images` images; *before* = one image per
  call (the old stage=predict loop), *after* = `--batch` images per call.

Arms alternate within each repeat; the table reports the median over `--repeats` of wall-clock
images/s (primary) with process CPU seconds per image beside it. On CUDA each arm is synchronised.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from typing import Any

import numpy as np
import torch

from bench import common

NAME = "infer_throughput"
SIZES = {"camvid": ((360, 480), (240, 320)), "cityscapes": ((1024, 2048), (512, 1024))}
QUICK = {"camvid": ((48, 64), (32, 48)), "cityscapes": ((64, 128), (32, 64))}


class Counted:
    """A network wrapper counting calls (the table's network calls per image)."""

    def __init__(self, net: Any) -> None:
        self.net, self.calls = net, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.net, name)

    def __call__(self, x: torch.Tensor) -> Any:
        self.calls += 1
        return self.net(x)


def windows(size: tuple[int, int], crop: tuple[int, int]) -> int:
    """Windows of stage=eval's slide at the default 2/3 stride (what calls_per_image counts with sw_batch 1)."""
    from rspnet.inference import _starts

    return math.prod(len(_starts(s, c, max(1, 2 * c // 3))) for s, c in zip(size, crop))


def build_model(preset: str, device: str) -> Any:
    """The zoo's paper_like architecture at `preset` (random weights) as an rspnet Model."""
    from rspnet.api import Model, build_zoo_net, zoo_entries

    torch.manual_seed(0)
    net, _ = build_zoo_net(zoo_entries()[f"paper_like-{preset}"])
    return Model(net.eval().to(device), [str(i) for i in range(19)], [[0, 0, 0]] * 19, preset, "zoo", trained=False)


def measure(fn: Any, n_images: int, device: str) -> tuple[float, float]:
    """(wall images/s, CPU seconds per image) of one call of `fn` processing `n_images`."""
    common.sync(device)
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    common.sync(device)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return n_images / wall, cpu / n_images


def _job(seg: Any, path: str, images: list[np.ndarray]) -> tuple[Any, int]:
    """(callable, images it processes): eval = one image per call (as stage=eval at Cityscapes size), predict = all."""
    from rspnet.segmenter import to_tensor

    if path == "eval slide":
        return (lambda: seg.scores(to_tensor(images[0])[None]).argmax(1)), 1
    return (lambda: seg.predict(images)), len(images)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per (size, path, arm) with median images/s, CPU s/image and network calls per image."""
    from rspnet.segmenter import Segmenter

    model = build_model(args.model, args.device)
    counter = model.net = Counted(model.net)
    rng = np.random.default_rng(0)
    rows = []
    for name, (size, crop) in (QUICK if args.quick else SIZES).items():
        images = [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(args.images)]
        arms = {
            ("eval slide", "before (sw_batch 1)"): Segmenter(model, "slide", args.device, 1, crop=crop, sw_batch=1),
            ("eval slide", f"after (sw_batch {args.sw_batch})"): Segmenter(model, "slide", args.device, 1, crop=crop,
                                                                           sw_batch=args.sw_batch),
            ("predict whole", "before (batch 1)"): Segmenter(model, "whole", args.device, 1),
            ("predict whole", f"after (batch {args.batch})"): Segmenter(model, "whole", args.device, args.batch),
        }
        results: dict[tuple[str, str], list[tuple[float, float]]] = {k: [] for k in arms}
        calls: dict[tuple[str, str], float] = {}
        jobs = {key: _job(seg, key[0], images) for key, seg in arms.items()}
        for fn, _ in jobs.values():
            fn()  # warm-up (allocator, oneDNN/cuDNN kernel choice), untimed
        for _ in range(args.repeats):
            for key, (fn, n) in jobs.items():  # alternate the arms: a neighbour's load hits them alike
                counter.calls = 0
                results[key].append(measure(fn, n, args.device))
                calls[key] = counter.calls / n
        for (path, arm), values in results.items():
            rows.append({"size": name, "image": list(size), "window": list(crop) if path == "eval slide" else None,
                         "path": path, "arm": arm, "images_per_s": common.median([v[0] for v in values]),
                         "cpu_s_per_image": common.median([v[1] for v in values]), "calls_per_image": calls[(path, arm)]})
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown table: wall images/s first, CPU time beside, speed-up over the `before` arm of the same path."""
    before = {(r["size"], r["path"]): r["images_per_s"] for r in rows if r["arm"].startswith("before")}
    out = [[r["size"], f"{r['image'][0]}x{r['image'][1]}", r["path"], r["arm"], f"{r['images_per_s']:.3f}",
            f"{r['cpu_s_per_image']:.3f}", f"{r['calls_per_image']:g}",
            f"{r['images_per_s'] / before[(r['size'], r['path'])]:.2f}"] for r in rows]
    return common.md_table(["size", "image", "path", "arm", "images/s (wall)", "CPU s / image", "network calls / image",
                            "speed-up"], out)


def section(rows: list[dict[str, Any]], args: argparse.Namespace, command: str) -> str:
    """The docs/benchmarks.md section."""
    return "\n".join([
        "## Eval/predict throughput: window batching and batched predict",
        "",
        common.device_line(threads=torch.get_num_threads()),
        f"Command: `{command}`",
        "",
        f"Model: the `{args.model}` paper_like net (FCN head, 19 classes, random weights) on {args.device}; "
        f"median of {args.repeats} alternating repeats; predict over {args.images} images.",
        "",
        table(rows),
    ])


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Parse arguments, measure, print (and optionally write) the table."""
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny", choices=["tiny", "small", "paper"])
    ap.add_argument("--device", default=common.cuda_device())
    ap.add_argument("--sw-batch", type=int, default=4)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="CPU torch threads (default: torch's)")
    ap.add_argument("--quick", action="store_true", help="tiny images, one repeat (seconds; for the test)")
    common.add_write_arg(ap)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.repeats, args.images = 1, min(args.images, 2 * args.batch)
    rows = run(args)
    print(table(rows))
    if args.write:
        common.write_section(args.write, NAME, section(rows, args, common.command_line("bench.infer_throughput", argv)))
    return rows


if __name__ == "__main__":
    main()

