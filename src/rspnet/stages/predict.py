"""stage=predict: colour overlays and Cityscapes-format `*_labelIds.png` for a folder, a dataset split or a video.

Layout under DIR/predictions: `overlay/<stem>.png` and `labelIds/<city>/<stem>_labelIds.png`
(city = the image's parent folder, as in leftImg8bit/<split>/<city>/, else "unknown";
a trailing `_leftImg8bit` is dropped from the stem, as the benchmark expects
`<city>_<seq>_<frame>*.png`). A video (`predict.input=clip.mp4`) gives `overlay.mp4` (see
predict_video). Images go through a DataLoader in batches of `predict.batch_size`, with a progress
bar; DIR/predict.json reports images (frames)/s.
"""

from __future__ import annotations

import io
import logging
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from rspnet.api import load_model
from rspnet.data import build_dataset
from rspnet.data.base import decode_file
from rspnet.data.cityscapes import trainid_to_labelid
from rspnet.data.transforms import eval_transform
from rspnet.errors import DataError
from rspnet.inference import upsample_argmax
from rspnet.segmenter import Segmenter
from rspnet.utils.config import output_dir, require
from rspnet.utils.io import atomic_write_bytes, atomic_write_json
from rspnet.viz.masks import denormalise, overlay

log = logging.getLogger(__name__)
CITYSCAPES_CLASSES = 19
Item = tuple[str, str, np.ndarray, torch.Tensor]  # stem, city, RGB uint8 [H, W, 3], normalised [3, H, W]


def _stem_city(path: str | None, index: int, fallback: str) -> tuple[str, str]:
    """Output stem and city folder for an input image path (or a dataset index when there is no file)."""
    if path is None:
        return f"{fallback}_{index:06d}", "unknown"
    p = Path(path)
    stem = p.stem[: -len("_leftImg8bit")] if p.stem.endswith("_leftImg8bit") else p.stem
    return stem, p.parent.name or "unknown"


def prepare(rgb: np.ndarray, cfg: DictConfig) -> torch.Tensor:
    """uint8 [H, W, 3] -> the network input [3, h, w]: the datasets' eval pipeline (normalise, optional resize_long)."""
    x = eval_transform(cfg.dataset.get("resize_long"))(image=rgb)["image"]
    return torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1).float()


def _to_rgb(im: Image.Image) -> np.ndarray:
    if im.mode.startswith("I"):  # 16/32-bit greyscale: rescale to 8 bit before RGB conversion
        a = np.asarray(im, dtype=np.float64)
        a = (255.0 * (a - a.min()) / max(float(a.max() - a.min()), 1.0)).astype(np.uint8)
        return np.stack([a] * 3, axis=-1)
    return np.array(im.convert("RGB"), dtype=np.uint8)  # a writable copy (torch.from_numpy needs one)


def read_rgb(path: Path) -> np.ndarray:
    """Any PIL-readable image (grey, palette, RGBA, 16-bit) as uint8 RGB [H, W, 3]; clear error if unreadable.

    Empty (0 bytes, 0 pixels) and decompression-bomb-sized files are one DataError too (`decode_file`).
    """
    return decode_file(path, "image", _to_rgb)


class FolderImages:
    """Images under a folder (recursive, sorted) as `Item`s; a map-style dataset for the DataLoader."""

    def __init__(self, cfg: DictConfig, folder: str, extensions: list[str]) -> None:
        root = Path(folder)
        if not root.is_dir():
            raise DataError(f"predict.input={folder}: folder not found")
        exts = {e.lower() for e in extensions}
        self.files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in exts)
        if not self.files:
            raise DataError(f"predict.input={folder}: no images ({', '.join(sorted(exts))}) in it")
        self.cfg = cfg

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Item:
        rgb = read_rgb(self.files[i])
        return (*_stem_city(str(self.files[i]), i, "image"), rgb, prepare(rgb, self.cfg))


class SplitImages:
    """Images of the dataset split `split=`; files are re-read so predictions keep the original resolution."""

    def __init__(self, cfg: DictConfig) -> None:
        self.ds = build_dataset(cfg, str(cfg.split), train=False)
        self.cfg = cfg

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> Item:
        image_path = self.ds.items[i][0] if i < len(self.ds.items) else None
        if image_path is None:  # generated data (synthetic): no file, use the dataset's own tensor
            x = self.ds[i][0]
            return (*_stem_city(None, i, self.ds.name), denormalise(x), x)
        rgb = read_rgb(Path(image_path))
        return (*_stem_city(str(image_path), i, self.ds.name), rgb, prepare(rgb, self.cfg))


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
    # predict_video builds on this module's helpers: imported here, not at the top, to break the cycle
    from rspnet.stages.predict_video import VIDEO_EXTENSIONS, predict_video

    out = output_dir(cfg)
    ckpt = require(
        cfg, "ckpt", "pass ckpt=PATH to a checkpoint written by stage=train (or a model.onnx from stage=export)"
    )
    p = cfg.predict
    batch_size = int(p.get("batch_size") or 1)
    model = load_model(ckpt, "cuda" if _wants_gpu(cfg) else "cpu")
    seg = Segmenter.from_config(model, cfg, "cuda" if _wants_gpu(cfg) else "cpu", batch_size)
    source = str(p.input) if p.get("input") else None
    video = source is not None and Path(source).suffix.lower() in VIDEO_EXTENSIONS
    save, label_ids = _label_ids(cfg, model.num_classes, video)
    limit = None if p.get("limit") is None else int(p.limit)
    t0 = time.perf_counter()
    if video:
        result = predict_video(cfg, seg, Path(source), out / "predictions", save, label_ids, limit)  # type: ignore[arg-type]
    else:
        items = FolderImages(cfg, source, list(p.extensions)) if source else SplitImages(cfg)
        result = {"num_images": _predict_items(cfg, seg, items, out / "predictions", save, label_ids, limit)}
    seconds = time.perf_counter() - t0
    n = result["num_images"]
    report = {
        **result,
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
    log.info(
        "wrote predictions for %d %s to %s (%.2f %s/s)",
        n,
        "frames" if video else "images",
        out / "predictions",
        report["images_per_s"] or 0.0,
        "frames" if video else "images",
    )
    return report


def _wants_gpu(cfg: DictConfig) -> bool:
    """The trainer asks for a GPU and one is present."""
    wants = str(cfg.trainer.get("accelerator", "cpu")) in ("gpu", "cuda", "auto")
    return wants and torch.cuda.is_available()


def write_prediction(
    out: Path,
    stem: str,
    city: str,
    pred: np.ndarray,
    rgb: np.ndarray | None,
    palette: list,
    alpha: float,
    save: bool,
    label_ids: bool,
) -> None:
    """labelIds (or class-index) PNG and the overlay PNG of one image, atomically."""
    if label_ids:
        atomic_write_bytes(
            out / "labelIds" / city / f"{stem}_labelIds.png", _png(trainid_to_labelid(pred).astype(np.uint8))
        )
    elif save:
        atomic_write_bytes(out / "ids" / city / f"{stem}.png", _png(pred))
    if rgb is not None:
        atomic_write_bytes(out / "overlay" / f"{stem}.png", _png(overlay(rgb, pred, palette, alpha)))


def predict_batch(seg: Segmenter, xs: list[torch.Tensor], sizes: list[tuple[int, int]]) -> list[np.ndarray]:
    """uint8 class maps at `sizes` (the files' sizes) of network inputs `xs`, batching inputs of equal shape."""
    preds: list[np.ndarray | None] = [None] * len(xs)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, x in enumerate(xs):
        groups.setdefault(tuple(x.shape), []).append(i)
    for idx in groups.values():
        scores = seg.scores(torch.stack([xs[i] for i in idx]))
        for j, i in enumerate(idx):
            # back from dataset.resize_long to the file's size, memory-bounded for huge images
            preds[i] = upsample_argmax(scores[j : j + 1], sizes[i])[0].to(torch.uint8).cpu().numpy()
    return preds  # type: ignore[return-value]


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
    loader = DataLoader(data, batch_size=seg.batch_size, num_workers=min(workers, batches), collate_fn=list)
    n = 0
    with tqdm(total=len(data), unit="img", desc="predict", disable=not p.get("progress", True)) as bar:
        for batch in loader:
            preds = predict_batch(seg, [x for *_, x in batch], [rgb.shape[:2] for _, _, rgb, _ in batch])
            for (stem, city, rgb, _), pred in zip(batch, preds):
                write_prediction(
                    out,
                    stem,
                    city,
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
