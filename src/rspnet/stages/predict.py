"""stage=predict: colour overlays and Cityscapes-format `*_labelIds.png` for a folder, a dataset split or a video.

Layout under DIR/predictions, mirroring the input tree (folder = an image's folder relative to the
input folder, or to the split's common folder):
`overlay/<folder>/<name>.png` and `labelIds/<city>/<name>_labelIds.png` (class-index maps of
non-Cityscapes models: `ids/<city>/<name>.png`), where city = folder, or the input folder's own name
for files directly in it, so Cityscapes' `leftImg8bit/<split>/<city>/` keeps the benchmark's `<city>/`
layout. name = the file name without its extension (a trailing `_leftImg8bit` dropped, as the
benchmark expects `<city>_<seq>_<frame>*.png`); where two inputs would get the same output (`x.png` and
`x.jpg` in one folder) both keep their extension (`x.png.png`, `x.jpg.png`); a clash even then is a
DataError before anything is written. No file is ever written twice.

A run writes into DIR/.predictions.partial and renames it to DIR/predictions when complete, then
writes DIR/predict.json; an output dir that already holds a predict's output is refused unless
`predict.overwrite=true` (which replaces it whole, never mixing two runs). A video
(`predict.input=clip.mp4`) gives `overlay.mp4` (see `_predict_video`). Images go through a DataLoader in
batches of `predict.batch_size`, with a progress bar; DIR/predict.json reports images (frames)/s.
Reading, normalising (`rspnet.data.images`, `rspnet.data.video`) and batching by size (`Segmenter`)
are the Python API's; this stage names and writes the files.

On a video: DIR/predictions/overlay.mp4 (mp4v, the source's fps) and, if asked, per-frame labelIds
`labelIds/<video stem>/<video stem>_<frame:06d>_labelIds.png` (`predict.label_ids=true`). A video
that ends before the frame count its container announces (truncated or corrupt) is a DataError, not
a shorter result (containers that announce no count, 0, are read to their end); the video is written
under a temporary name and renamed to overlay.mp4 only when complete.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm  # a text bar everywhere: tqdm.auto warns in Jupyter without ipywidgets

from rspnet.api import load_model
from rspnet.data import build_dataset
from rspnet.data.cityscapes import trainid_to_labelid
from rspnet.data.images import list_images, prepare, read_rgb
from rspnet.data.video import frames, is_video, open_video, video_writer, write_frame
from rspnet.errors import ConfigError, DataError
from rspnet.segmenter import Segmenter
from rspnet.utils.io import atomic_write_bytes, atomic_write_json
from rspnet.utils.runtime import output_dir, require
from rspnet.utils.threads import loader_workers
from rspnet.viz.masks import denormalise, overlay

log = logging.getLogger(__name__)
CITYSCAPES_CLASSES = 19
PARTIAL = ".predictions.partial"  # a run's output until it is complete


class Names(NamedTuple):
    """Where one input's predictions go (see the module docstring)."""

    folder: str  # the input's folder relative to the input root ("" at the root): overlays mirror it
    city: str  # class maps' folder: `folder`, or the root's own name for files directly in it
    base: str  # output file name without ".png"


Item = tuple[Names, np.ndarray, torch.Tensor]  # names, RGB uint8 [H, W, 3], normalised [3, H, W]


def _names(path: Path, root: Path, keep_suffix: bool) -> Names:
    folder = path.parent.relative_to(root).as_posix()
    folder = "" if folder == "." else folder
    stem = path.stem[: -len("_leftImg8bit")] if path.stem.endswith("_leftImg8bit") else path.stem
    return Names(folder, folder or root.name or "unknown", path.name if keep_suffix else stem)


def _clashes(names: list[Names], fold: bool) -> list[list[int]]:
    """Groups of inputs that would share an output file (`fold`: also when only the letter case differs)."""
    owners: dict[tuple[str, ...], list[int]] = {}
    for i, n in enumerate(names):
        for key in (("overlay", n.folder, n.base), ("map", n.city, n.base)):
            owners.setdefault(tuple(k.casefold() if fold else k for k in key), []).append(i)
    return [group for group in owners.values() if len(group) > 1]


def mirror_names(files: Sequence[Path], root: Path) -> list[Names]:
    """Output names of `files` under `root`: unique, with the extension kept only where two would clash.

    Names that differ only in case also keep their extensions (one file on a case-insensitive filesystem).
    """
    full: set[int] = set()
    while True:
        names = [_names(f, root, i in full) for i, f in enumerate(files)]
        for group in _clashes(names, fold=False):
            if all(i in full for i in group):
                raise DataError(
                    f"predict.input: {files[group[0]]} and {files[group[1]]} would be written to the same "
                    "prediction file; rename one of them"
                )
        pending = {i for group in _clashes(names, fold=True) for i in group} - full
        if not pending:
            return names
        full |= pending


def _prepare(cfg: DictConfig) -> partial:
    """The network input of a uint8 image: the dataset's eval pipeline (normalise, `resize_long`, `eval_scale`)."""
    return partial(prepare, resize_long=cfg.dataset.get("resize_long"), eval_scale=cfg.dataset.get("eval_scale"))


class FolderImages:
    """Images under a folder (recursive, sorted) as `Item`s; a map-style dataset for the DataLoader."""

    def __init__(self, cfg: DictConfig, folder: str, extensions: list[str]) -> None:
        root = Path(folder)
        if not root.is_dir():
            raise DataError(f"predict.input={folder}: folder not found")
        self.files = list_images(root, extensions, name=f"predict.input={folder}")
        self.names = mirror_names(self.files, root)
        self.prepare = _prepare(cfg)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Item:
        rgb = read_rgb(self.files[i])
        return self.names[i], rgb, self.prepare(rgb)


class SplitImages:
    """Images of the dataset split `split=`; files are re-read so predictions keep the original resolution."""

    def __init__(self, cfg: DictConfig) -> None:
        self.ds = build_dataset(cfg, str(cfg.split), train=False)
        files = [Path(item[0]) for item in self.ds.items if item[0] is not None]
        self.names = None  # generated data (synthetic) has no files: its own tensors, named <dataset>_<index>
        if files and len(files) == len(self.ds):
            self.names = mirror_names(files, Path(os.path.commonpath([f.parent for f in files])))
        self.prepare = _prepare(cfg)

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> Item:
        if self.names is None:
            x = self.ds[i][0]
            return Names("", "unknown", f"{self.ds.name}_{i:06d}"), denormalise(x), x
        rgb = read_rgb(Path(self.ds.items[i][0]))
        return self.names[i], rgb, self.prepare(rgb)


def _png(array: np.ndarray) -> bytes:
    """Encode a uint8 [H, W] or [H, W, 3] array as PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _label_ids(cfg: DictConfig, num_classes: int, video: bool) -> tuple[bool, bool]:
    """(write per-image class maps, as Cityscapes labelIds); `predict.label_ids: null` = images yes, video frames no."""
    want = cfg.predict.get("label_ids")
    want = (not video) if want is None else bool(want)
    cityscapes = num_classes == CITYSCAPES_CLASSES
    if want and not cityscapes:
        log.warning(
            "labelIds PNGs need a 19-class (Cityscapes trainId) model; this one has %s classes: "
            "writing class-index PNGs to predictions/ids/ instead",
            num_classes,
        )
    return want, want and cityscapes


def run(cfg: DictConfig) -> dict:
    """Predict a folder, a dataset split or a video (`predict.input`) in batches; write DIR/predictions + predict.json."""
    out = output_dir(cfg)
    ckpt = require(
        cfg, "ckpt", "pass ckpt=PATH to a checkpoint written by stage=train (or a model.onnx from stage=export)"
    )
    p = cfg.predict
    _check_previous_run(out, bool(p.get("overwrite", False)))
    batch_size = int(p.get("batch_size") or 1)
    model = load_model(ckpt, "cuda" if _wants_gpu(cfg) else "cpu")
    seg = Segmenter.from_config(model, cfg, "cuda" if _wants_gpu(cfg) else "cpu", batch_size)
    source = str(p.input) if p.get("input") else None
    video = source is not None and is_video(source)
    save, label_ids = _label_ids(cfg, model.num_classes, video)
    limit = None if p.get("limit") is None else int(p.limit)
    staging = out / PARTIAL
    shutil.rmtree(staging, ignore_errors=True)  # a killed run's leftovers: never final
    t0 = time.perf_counter()
    try:
        if video:
            result = _predict_video(cfg, seg, Path(source), staging, save, label_ids, limit)  # type: ignore[arg-type]
        else:
            items = FolderImages(cfg, source, list(p.extensions)) if source else SplitImages(cfg)
            result = {"num_images": _predict_items(cfg, seg, items, staging, save, label_ids, limit)}
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    seconds = time.perf_counter() - t0
    _publish(staging, out / "predictions")
    n = result["num_images"]
    report = {
        **result,
        **({"video": str(out / "predictions" / "overlay.mp4")} if video else {}),
        "files": _count_files(out / "predictions"),
        "predictions": str(out / "predictions"),
        "label_ids": label_ids,
        "input": source or f"split={cfg.split}",
        "seconds": round(seconds, 3),
        "images_per_s": round(n / seconds, 3) if seconds > 0 else None,
        "batch_size": batch_size,
        "device": str(seg.device),
        "model": str(ckpt),
    }
    atomic_write_json(out / "predict.json", report)
    unit = "frames" if video else "images"
    log.info(
        "wrote predictions for %d %s to %s (%.2f %s/s)",
        n,
        unit,
        out / "predictions",
        report["images_per_s"] or 0.0,
        unit,
    )
    return report


def _check_previous_run(out: Path, overwrite: bool) -> None:
    """Refuse an output dir that holds a previous predict's output (`predict.overwrite=true` replaces it)."""
    previous = out / "predictions"
    if overwrite or not ((previous.is_dir() and any(previous.iterdir())) or (out / "predict.json").exists()):
        return
    raise ConfigError(
        f"{previous} holds a previous predict's output; pass predict.overwrite=true to replace it "
        "or choose another paths.output_dir"
    )


def _publish(staging: Path, final: Path) -> None:
    """Rename the complete `staging` folder to `final`, replacing a previous run's folder whole."""
    staging.mkdir(exist_ok=True)  # a run that wrote nothing (overlay=false, no class maps) still publishes
    (final.parent / "predict.json").unlink(missing_ok=True)  # the old report must not describe the new files
    old = final.with_name(".predictions.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    staging.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _count_files(folder: Path) -> dict[str, int]:
    """Files written per kind (overlay, labelIds, ids, ...): one per input, as no name is used twice."""
    return {d.name: sum(1 for f in d.rglob("*") if f.is_file()) for d in sorted(folder.iterdir()) if d.is_dir()}


def _wants_gpu(cfg: DictConfig) -> bool:
    """The trainer asks for a GPU and one is present."""
    wants = str(cfg.trainer.get("accelerator", "cpu")) in ("gpu", "cuda", "auto")
    return wants and torch.cuda.is_available()


def write_prediction(
    out: Path,
    names: Names,
    pred: np.ndarray,
    rgb: np.ndarray | None,
    palette: list,
    alpha: float,
    save: bool,
    label_ids: bool,
) -> None:
    """labelIds (or class-index) PNG and the overlay PNG of one image, atomically."""
    folder, city, base = names
    if label_ids:
        atomic_write_bytes(
            out / "labelIds" / city / f"{base}_labelIds.png", _png(trainid_to_labelid(pred).astype(np.uint8))
        )
    elif save:
        atomic_write_bytes(out / "ids" / city / f"{base}.png", _png(pred))
    if rgb is not None:
        atomic_write_bytes(out / "overlay" / folder / f"{base}.png", _png(overlay(rgb, pred, palette, alpha)))


def _predict_items(
    cfg: DictConfig,
    seg: Segmenter,
    items: FolderImages | SplitImages,
    out: Path,
    save: bool,
    label_ids: bool,
    limit: int | None,
) -> int:
    """Folder or split images through a DataLoader (`predict.batch_size`, `predict.num_workers`) with a progress bar."""
    p = cfg.predict
    data = Subset(items, range(min(limit, len(items)))) if limit is not None else items
    workers = p.get("num_workers")
    workers = int(cfg.dataset.get("num_workers", 0) if workers is None else workers)
    batches = -(-len(data) // seg.batch_size)
    loader = DataLoader(data, batch_size=seg.batch_size, collate_fn=list, **loader_workers(min(workers, batches)))
    n = 0
    with tqdm(total=len(data), unit="img", desc="predict", disable=not p.get("progress", True)) as bar:
        for batch in loader:
            # back from dataset.resize_long / eval_scale to the file's size, memory-bounded for huge images
            preds = seg.predict_inputs([x for *_, x in batch], [rgb.shape[:2] for _, rgb, _ in batch], torch.uint8)
            for (names, rgb, _), pred in zip(batch, preds):
                write_prediction(
                    out,
                    names,
                    pred,
                    rgb if p.get("overlay", True) else None,
                    seg.palette,
                    float(p.alpha),
                    save,
                    label_ids,
                )
            n += len(batch)
            bar.update(len(batch))
    return n


def _predict_video(
    cfg: DictConfig, seg: Segmenter, path: Path, out: Path, save: bool, label_ids: bool, limit: int | None
) -> dict:
    """Overlay video + optional per-frame class maps of `path`; returns {"num_images", "video", "fps"}."""
    cap, fps, announced = open_video(path)
    expected = min(announced, limit) if announced and limit is not None else announced
    p = cfg.predict
    out.mkdir(parents=True, exist_ok=True)
    video_path = out / "overlay.mp4"
    tmp = out / ".overlay.mp4.part.mp4"  # renamed when complete: a killed run leaves no half video under the final name
    writer = None
    n = 0
    try:
        with tqdm(total=expected, unit="frame", desc="predict", disable=not p.get("progress", True)) as bar:
            for batch in seg.batches(frames(cap, limit), _prepare(cfg), torch.uint8):
                for frame, pred in batch:
                    writer = writer or video_writer(tmp, fps, frame)
                    write_frame(writer, overlay(frame, pred, seg.palette, float(p.alpha)))
                    if save:
                        names = Names("", path.stem, f"{path.stem}_{n:06d}")
                        write_prediction(out, names, pred, None, seg.palette, 0.0, save, label_ids)
                    n += 1
                bar.update(len(batch))
        _check_frame_count(path, n, expected)
    except BaseException:
        if writer is not None:
            writer.release()
            writer = None
        tmp.unlink(missing_ok=True)
        raise
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    tmp.replace(video_path)
    return {"num_images": n, "video": str(video_path), "fps": fps}


def _check_frame_count(path: Path, n: int, expected: int | None) -> None:
    """No frame, or fewer than the container announces (truncated or corrupt), is a DataError."""
    if n == 0:
        raise DataError(f"predict.input={path}: no frame could be read from this video")
    if expected is not None and n < expected:
        raise DataError(
            f"predict.input={path}: only {n} of the {expected} frames its container announces could be read "
            "(truncated or corrupt video); no result was written"
        )
