"""`Segmenter`: class maps for images, files, lists and folders with any inference mode, in batches."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from rspnet.api import Model, load_model
from rspnet.data.images import ImageLike, as_rgb, list_images, to_tensor
from rspnet.errors import ConfigError
from rspnet.inference import MODES, infer, inference_options, upsample_argmax

Prediction = np.ndarray | tuple[np.ndarray, np.ndarray]  # class map, or (class map, probabilities)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """`None`/"auto" -> CUDA when present, else CPU; "cuda" without a GPU is a ConfigError."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={device}: no CUDA device is visible; use device=cpu")
    return dev


class Segmenter:
    """Segment images with a model: `Segmenter(load_model("best.ckpt")).predict("street.png")` -> [H, W] class ids.

    `inference`: "whole" (one pass), "slide" (windows of `crop`, default the model's training
    crop, every `stride`, `sw_batch` windows per call) or "multiscale_flip" (`scales` + flips).
    Images of equal size are batched `batch_size` at a time.
    """

    def __init__(
        self,
        model: Model | str | Path,
        inference: str = "whole",
        device: str | torch.device | None = None,
        batch_size: int = 1,
        crop: Sequence[int] | None = None,
        stride: Sequence[int] | None = None,
        scales: Sequence[float] = (0.75, 1.0, 1.25),
        sw_batch: int = 4,
        fp16: bool = False,
    ) -> None:
        if inference not in MODES:
            raise ConfigError(f"inference={inference} is unknown; use one of: {', '.join(MODES)}")
        if int(batch_size) < 1:
            raise ConfigError(f"batch_size={batch_size} must be >= 1")
        self.device = resolve_device(device)
        self.model = model if isinstance(model, Model) else load_model(model, str(self.device))
        self.model.to(self.device)
        self.inference, self.batch_size, self.sw_batch = inference, int(batch_size), int(sw_batch)
        # multiscale_flip slides each scale only with an explicit crop (as stage=eval does)
        self.crop = (
            tuple(int(v) for v in crop)
            if crop is not None
            else (self.model.crop_size if inference == "slide" else None)
        )
        if inference == "slide" and self.crop is None:
            raise ConfigError("inference=slide needs crop=(H, W): this model does not record its training crop")
        self.stride = tuple(int(v) for v in stride) if stride is not None else None
        self.scales = tuple(float(v) for v in scales) if inference == "multiscale_flip" else (1.0,)
        self.fp16 = bool(fp16)
        if self.fp16 and (self.device.type != "cuda" or self.model.is_onnx):
            raise ConfigError("fp16=True needs a CUDA device and a torch model (checkpoint or zoo)")

    @classmethod
    def from_config(
        cls, model: Model, cfg: DictConfig, device: str | torch.device | None = None, batch_size: int = 1
    ) -> Segmenter:
        """The options of the `inference` group (`mode`, `slide_crop`, `slide_stride`, `scales`, `sw_batch`)."""
        opts = inference_options(cfg)
        return cls(model, opts.pop("mode"), device, batch_size, **opts)

    @property
    def classes(self) -> list[str]:
        """Class names of the model (index = class id)."""
        return self.model.classes

    @property
    def palette(self) -> list[list[int]]:
        """RGB colour of each class."""
        return self.model.palette

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores [B, K, H, W] (logits, or log-probabilities for multiscale_flip) of a normalised batch."""
        x = x.to(self.device)
        amp = torch.autocast("cuda", dtype=torch.float16) if self.fp16 else contextlib.nullcontext()
        with torch.inference_mode(), amp:
            return infer(
                self.model,
                x,
                self.inference,
                crop=self.crop,
                stride=self.stride,
                scales=self.scales,
                sw_batch=self.sw_batch,
            ).float()

    def predict(self, inputs: ImageLike | Iterable[ImageLike], probs: bool = False) -> Prediction | list[Prediction]:
        """Class maps (int64 [H, W]) of an image array, an image path, a list of them or a folder (sorted, recursive).

        One image in -> one map; a list or a folder -> a list of maps. `probs=True` returns
        (map, class probabilities float32 [K, H, W]) pairs instead.
        """
        single = isinstance(inputs, np.ndarray) or (isinstance(inputs, (str, Path)) and not Path(inputs).is_dir())
        if single:
            items: Iterable[ImageLike] = [inputs]  # type: ignore[list-item]
        elif isinstance(inputs, (str, Path)):
            items = list_images(inputs)
        else:
            items = inputs  # type: ignore[assignment]
        results = list(self.iter_predict(items, probs))
        return results[0] if single else results

    def iter_predict(self, images: Iterable[ImageLike], probs: bool = False) -> Iterator[Prediction]:
        """`predict` as a generator over any iterable (video frames, a long list): batches of `batch_size`."""
        for batch in self.batches(images, probs=probs):
            for _, pred in batch:
                yield pred

    def batches(
        self,
        images: Iterable[ImageLike],
        transform: Callable[[np.ndarray], torch.Tensor] = to_tensor,
        dtype: torch.dtype = torch.int64,
        probs: bool = False,
    ) -> Iterator[list[tuple[np.ndarray, Prediction]]]:
        """(RGB image, prediction) pairs, one list per `batch_size` images, in input order.

        `transform` turns a uint8 RGB image into the network input (default `to_tensor`: the image's
        own size; stage=predict passes the dataset's eval pipeline); maps are at the image's size.
        """
        batch: list[np.ndarray] = []
        for image in images:
            batch.append(as_rgb(image))
            if len(batch) == self.batch_size:
                yield self._pairs(batch, transform, dtype, probs)
                batch = []
        if batch:
            yield self._pairs(batch, transform, dtype, probs)

    def _pairs(
        self, rgbs: list[np.ndarray], transform: Callable, dtype: torch.dtype, probs: bool
    ) -> list[tuple[np.ndarray, Prediction]]:
        preds = self.predict_inputs([transform(rgb) for rgb in rgbs], [rgb.shape[:2] for rgb in rgbs], dtype, probs)
        return list(zip(rgbs, preds))

    def predict_inputs(
        self,
        xs: Sequence[torch.Tensor],
        sizes: Sequence[tuple[int, int]],
        dtype: torch.dtype = torch.int64,
        probs: bool = False,
    ) -> list[Prediction]:
        """Class maps at `sizes` of network inputs `xs` ([3, h, w] each), batching the inputs of equal shape.

        Scores are upsampled to each size memory-bounded (`upsample_argmax`: huge images); `probs=True`
        adds the class probabilities at the input's resolution (float32 [K, h, w]).
        """
        out: list[Prediction] = [np.empty(0)] * len(xs)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, x in enumerate(xs):
            groups.setdefault(tuple(x.shape), []).append(i)
        for idx in groups.values():
            scores = self.scores(torch.stack([xs[i] for i in idx]))
            p = scores.softmax(1).cpu().numpy() if probs else None
            for j, i in enumerate(idx):
                pred = upsample_argmax(scores[j : j + 1], sizes[i])[0].to(dtype).cpu().numpy()
                out[i] = (pred, p[j]) if p is not None else pred
        return out

    def colorize(self, mask: np.ndarray) -> np.ndarray:
        """[H, W] class ids -> [H, W, 3] uint8 picture in the model's palette."""
        from rspnet.viz.masks import colorize

        return colorize(mask, self.palette)

    def overlay(self, image: ImageLike, mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
        """The coloured mask blended over the image (`alpha` = mask opacity) -> [H, W, 3] uint8."""
        from rspnet.viz.masks import overlay

        return overlay(as_rgb(image), mask, self.palette, alpha)
