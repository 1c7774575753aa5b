"""Test-time inference modes: whole image, sliding window, multi-scale + flip (the `inference` config group)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from omegaconf import DictConfig

from rspnet.errors import ConfigError
from rspnet.models.layers import resize

MODES = ("whole", "slide", "multiscale_flip")
Net = Callable[[torch.Tensor], "torch.Tensor | dict[str, torch.Tensor]"]


def main_logits(out: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
    """A net's main logits from its output: derived nets return {"out", "aux"}, the others a bare tensor."""
    return out["out"] if isinstance(out, dict) else out


def _logits(net: Net, x: torch.Tensor) -> torch.Tensor:
    """Main logits [B, K, H, W] at input size."""
    y = main_logits(net(x))
    if tuple(y.shape[-2:]) != tuple(x.shape[-2:]):
        y = resize(y, x.shape[-2:])
    return y


def _pair(value: Sequence[int] | int, name: str) -> tuple[int, int]:
    """(H, W) from an int or a 2-sequence of positive ints."""
    pair = (value, value) if isinstance(value, int) else tuple(int(v) for v in value)
    if len(pair) != 2 or min(pair) < 1:
        raise ConfigError(f"{name} must be [H, W] of positive ints, got {list(pair)}")
    return pair  # type: ignore[return-value]


def _starts(size: int, crop: int, stride: int) -> list[int]:
    """Window start offsets covering [0, size) with the last window flush with the border."""
    if size <= crop:
        return [0]
    starts = list(range(0, size - crop, stride)) + [size - crop]
    return sorted(set(starts))


def slide_logits(
    net: Net, x: torch.Tensor, crop: Sequence[int] | int, stride: Sequence[int] | int, sw_batch: int = 1
) -> torch.Tensor:
    """Sliding-window logits: windows of `crop` every `stride`, overlaps averaged.

    A side shorter than the window is covered by one window of that side's length (not
    zero-padded: padding changes what the border pixels see, so an image smaller than the
    window gets exactly the `whole` logits). `sw_batch` windows (of every image of the batch)
    go through the network together: fewer, larger calls, and memory bounded by `sw_batch`
    windows rather than by the image.
    """
    ch, cw = _pair(crop, "inference.slide_crop")
    sh, sw = _pair(stride, "inference.slide_stride")
    if int(sw_batch) < 1:
        raise ConfigError(f"inference.sw_batch={sw_batch} must be >= 1")
    b, _, H, W = x.shape
    ch, cw = min(ch, H), min(cw, W)
    total: torch.Tensor | None = None
    count = torch.zeros(1, 1, H, W, device=x.device, dtype=x.dtype)
    starts = [(y0, x0) for y0 in _starts(H, ch, sh) for x0 in _starts(W, cw, sw)]
    for i in range(0, len(starts), int(sw_batch)):
        group = starts[i : i + int(sw_batch)]
        wins = torch.cat([x[..., y0 : y0 + ch, x0 : x0 + cw] for y0, x0 in group])  # [len(group) * B, 3, ch, cw]
        outs = _logits(net, wins).split(b)
        if total is None:  # K is known only after the first window
            total = x.new_zeros(b, outs[0].shape[1], H, W, dtype=outs[0].dtype)
        for (y0, x0), out in zip(group, outs):
            total[..., y0 : y0 + ch, x0 : x0 + cw] += out
            count[..., y0 : y0 + ch, x0 : x0 + cw] += 1
    assert total is not None
    return total / count.to(total.dtype)


def upsample_argmax(scores: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """argmax over K of bilinearly resized scores [B, K, h, w] -> [B, H, W] (int64).

    One class at a time with a running max, so a 6000x4000 Mapillary image needs a few
    H*W buffers instead of a K*H*W one; equals `interpolate(scores).argmax(1)`.
    """
    size = tuple(int(v) for v in size)
    if tuple(scores.shape[-2:]) == size:
        return scores.argmax(1)
    best = best_idx = None
    for k in range(scores.shape[1]):
        up = resize(scores[:, k : k + 1].float(), size)[:, 0]
        if best is None:
            best, best_idx = up, torch.zeros_like(up, dtype=torch.long)
        else:
            better = up > best  # strict: ties keep the lower class id, as argmax does
            best = torch.where(better, up, best)
            best_idx = torch.where(better, torch.full_like(best_idx, k), best_idx)
    assert best_idx is not None
    return best_idx


def multiscale_flip_scores(
    net: Net,
    x: torch.Tensor,
    scales: Sequence[float],
    flip: bool = True,
    predict: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Log of the softmax averaged over `scales` and (optionally) horizontal flips, at input size.

    `predict(x) -> logits` runs one scale (default: whole image; sliding window for big images).
    """
    predict = predict or (lambda t: _logits(net, t))
    h, w = x.shape[-2:]
    probs: torch.Tensor | None = None
    n = 0
    for s in scales:
        if s <= 0:
            raise ConfigError(f"inference.scales must be positive, got {list(scales)}")
        size = (max(1, round(h * s)), max(1, round(w * s)))
        xs = x if size == (h, w) else resize(x, size)
        for flipped in (False, True) if flip else (False,):
            inp = xs.flip(-1) if flipped else xs
            out = predict(inp)
            out = out.flip(-1) if flipped else out
            if tuple(out.shape[-2:]) != (h, w):
                out = resize(out, (h, w))
            p = out.float().softmax(dim=1)
            probs = p if probs is None else probs + p
            n += 1
    assert probs is not None
    return (probs / n).clamp_min(1e-12).log()


def infer(
    net: Net,
    x: torch.Tensor,
    mode: str = "whole",
    *,
    crop: Sequence[int] | None = None,
    stride: Sequence[int] | None = None,
    scales: Sequence[float] = (1.0,),
    sw_batch: int = 1,
) -> torch.Tensor:
    """Class scores [B, K, H, W] for a normalised batch; argmax over K is the prediction.

    multiscale_flip with a `crop` runs every scale as a sliding window (bounded memory for big images).
    """

    def slide(t: torch.Tensor) -> torch.Tensor:
        window = _pair(crop, "inference.slide_crop")  # type: ignore[arg-type]
        # default stride 2/3 of the window (mmsegmentation's usual overlap)
        step = stride if stride is not None else tuple(max(1, (2 * c) // 3) for c in window)
        return slide_logits(net, t, window, step, sw_batch)

    if mode == "whole":
        return _logits(net, x)
    if mode == "slide":
        if crop is None:
            raise ConfigError("inference=slide needs inference.slide_crop=[H,W] (or dataset.crop_size)")
        return slide(x)
    if mode == "multiscale_flip":
        return multiscale_flip_scores(net, x, scales, predict=slide if crop is not None else None)
    raise ConfigError(f"inference.mode={mode} is unknown; use one of: {', '.join(MODES)}")


def inference_options(cfg: DictConfig) -> dict[str, Any]:
    """`infer`'s keyword options from the `inference` group (whole-image when the config has none).

    slide: window `inference.slide_crop`, default dataset.crop_size; multiscale_flip slides only when
    `inference.slide_crop` is set explicitly, otherwise each scale is one whole-image pass.
    """
    opts = cfg.get("inference") or {}
    mode = str(opts.get("mode", "whole"))
    crop = opts.get("slide_crop") or (cfg.dataset.get("crop_size") if mode == "slide" else None)
    return {
        "mode": mode,
        "crop": list(crop) if crop else None,
        "stride": list(opts["slide_stride"]) if opts.get("slide_stride") else None,
        "scales": list(opts.get("scales") or [1.0]),
        "sw_batch": int(opts.get("sw_batch") or 1),
    }


def infer_from_cfg(net: Net, x: torch.Tensor, cfg: DictConfig) -> torch.Tensor:
    """`infer` with the options of the `inference` group (`inference_options`)."""
    return infer(net, x, **inference_options(cfg))
