"""stage=predict: colour overlays and Cityscapes-format `*_labelIds.png` for a folder or a dataset split.

Layout under DIR/predictions: `overlay/<stem>.png` and `labelIds/<city>/<stem>_labelIds.png`
(city = the image's parent folder, as in leftImg8bit/<split>/<city>/, else "unknown";
a trailing `_leftImg8bit` is dropped from the stem, as the benchmark expects
`<city>_<seq>_<frame>*.png`).
"""

from __future__ import annotations

import io
import itertools
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from rspnet.errors import DataError
from rspnet.utils.config import output_dir, require
from rspnet.utils.io import atomic_write_bytes

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
    from rspnet.data.transforms import eval_transform

    x = eval_transform(cfg.dataset.get("resize_long"))(image=rgb)["image"]
    return torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1).float()


def read_rgb(path: Path) -> np.ndarray:
    """Any PIL-readable image (grey, palette, RGBA, 16-bit) as uint8 RGB [H, W, 3]; clear error if unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode.startswith("I"):  # 16/32-bit greyscale: rescale to 8 bit before RGB conversion
                a = np.asarray(im, dtype=np.float64)
                a = (255.0 * (a - a.min()) / max(float(a.max() - a.min()), 1.0)).astype(np.uint8)
                return np.stack([a] * 3, axis=-1)
            return np.array(im.convert("RGB"), dtype=np.uint8)  # a writable copy (torch.from_numpy needs one)
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise DataError(f"{path}: cannot read image ({e})") from e


def folder_items(cfg: DictConfig, folder: str, extensions: list[str]) -> Iterator[Item]:
    """Images under `folder` (recursive, sorted)."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"predict.input={folder}: folder not found")
    exts = {e.lower() for e in extensions}
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in exts)
    if not files:
        raise DataError(f"predict.input={folder}: no images ({', '.join(sorted(exts))}) in it")
    for i, f in enumerate(files):
        rgb = read_rgb(f)
        yield (*_stem_city(str(f), i, "image"), rgb, prepare(rgb, cfg))


def dataset_items(cfg: DictConfig) -> Iterator[Item]:
    """Images of the dataset split `split=`; files are re-read so predictions keep the original resolution."""
    from rspnet.data import build_dataset
    from rspnet.viz.masks import denormalise

    ds = build_dataset(cfg, str(cfg.split), train=False)
    for i in range(len(ds)):
        image_path = ds.items[i][0] if i < len(ds.items) else None
        if image_path is None:  # generated data (synthetic): no file, use the dataset's own tensor
            x = ds[i][0]
            yield (*_stem_city(None, i, ds.name), denormalise(x), x)
        else:
            rgb = read_rgb(Path(image_path))
            yield (*_stem_city(str(image_path), i, ds.name), rgb, prepare(rgb, cfg))


def _png(array: np.ndarray) -> bytes:
    """Encode a uint8 [H, W] or [H, W, 3] array as PNG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _device(cfg: DictConfig) -> torch.device:
    """CUDA when the trainer asks for a GPU and one is present, else CPU."""
    wants_gpu = str(cfg.trainer.get("accelerator", "cpu")) in ("gpu", "cuda", "auto")
    return torch.device("cuda" if wants_gpu and torch.cuda.is_available() else "cpu")


def run_predict(cfg: DictConfig) -> dict:
    """Predict every image; write overlays and (19-class models) Cityscapes labelIds PNGs atomically."""
    from rspnet.data.cityscapes import trainid_to_labelid
    from rspnet.inference import infer_from_cfg, upsample_argmax
    from rspnet.lit.seg_module import load_seg_checkpoint
    from rspnet.viz.masks import overlay

    out = output_dir(cfg) / "predictions"
    ckpt = require(cfg, "ckpt", "pass ckpt=PATH to a checkpoint written by stage=train")
    module, meta = load_seg_checkpoint(ckpt, cfg)
    p = cfg.predict
    palette = meta.get("palette") or [[(37 * i) % 256, (91 * i) % 256, (173 * i) % 256] for i in range(meta["num_classes"])]
    label_ids = bool(p.get("label_ids", True)) and int(meta["num_classes"]) == CITYSCAPES_CLASSES
    if p.get("label_ids", True) and not label_ids:
        log.warning("labelIds PNGs need a 19-class (Cityscapes trainId) model; this one has %s classes: "
                    "writing class-index PNGs to predictions/ids/ instead", meta["num_classes"])
    device = _device(cfg)
    module.to(device)
    items = folder_items(cfg, str(p.input), list(p.extensions)) if p.get("input") else dataset_items(cfg)
    limit = p.get("limit")
    n = 0
    with torch.inference_mode():
        for stem, city, rgb, x in itertools.islice(items, None if limit is None else int(limit)):
            scores = infer_from_cfg(module, x[None].to(device), cfg)
            # back from dataset.resize_long to the file's size, memory-bounded for huge images
            pred = upsample_argmax(scores, rgb.shape[:2])[0].to(torch.uint8).cpu().numpy()
            if label_ids:
                ids = trainid_to_labelid(pred).astype(np.uint8)
                atomic_write_bytes(out / "labelIds" / city / f"{stem}_labelIds.png", _png(ids))
            else:
                atomic_write_bytes(out / "ids" / city / f"{stem}.png", _png(pred))
            if p.get("overlay", True):
                atomic_write_bytes(out / "overlay" / f"{stem}.png", _png(overlay(rgb, pred, palette, float(p.alpha))))
            n += 1
    log.info("wrote predictions for %d images to %s", n, out)
    return {"num_images": n, "predictions": str(out), "label_ids": label_ids}
