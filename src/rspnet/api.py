"""`load_model`: a segmentation network with its classes and palette, from a checkpoint, safetensors, ONNX or the zoo.

Every model is called the same way: a normalised float batch [B, 3, H, W] (datasets' MEAN/STD)
-> logits [B, K, h, w] (`rspnet.inference` resizes them to the input).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rspnet.errors import ArtifactError, ConfigError
from rspnet.inference import main_logits
from rspnet.utils.io import file_sha256

log = logging.getLogger("rspnet")
ZOO_PREFIX = "zoo:"


def default_palette(num_classes: int) -> list[list[int]]:
    """Distinct-enough colours for models that carry no palette."""
    return [[(37 * i) % 256, (91 * i) % 256, (173 * i) % 256] for i in range(num_classes)]


class OnnxNet:
    """An onnxruntime session with the torch call interface: tensor in, logits tensor out."""

    def __init__(self, path: Path, device: str = "cpu", threads: int | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=providers)
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ArtifactError(
                f"{path}: cannot load ONNX model ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
            ) from e
        self.path, self.device = path, device
        self.input = self.session.get_inputs()[0].name
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self.input: x.detach().float().cpu().numpy()})[0]
        return torch.from_numpy(np.asarray(out)).to(x.device)

    def params(self) -> int:
        """Number of weights stored in the graph (BatchNorms are folded into the convs at export)."""
        import onnx
        from onnx import numpy_helper

        graph = onnx.load(str(self.path), load_external_data=False).graph
        return int(
            sum(numpy_helper.to_array(t).size for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT)
        )


@dataclass
class Model:
    """A segmentation network plus what is needed to read its output (classes, palette)."""

    net: Any  # torch nn.Module or OnnxNet
    classes: list[str]
    palette: list[list[int]]
    source: str
    kind: str  # "checkpoint" | "safetensors" | "onnx" | "zoo"
    trained: bool = True
    crop_size: tuple[int, int] | None = None  # training crop: the default window of inference="slide"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        """Number of classes the network predicts."""
        return len(self.classes)

    @property
    def is_onnx(self) -> bool:
        """True for an onnxruntime session (no torch parameters, no fp16 cast)."""
        return isinstance(self.net, OnnxNet)

    def params(self) -> int:
        """Parameter count of the network."""
        return self.net.params() if self.is_onnx else sum(p.numel() for p in self.net.parameters())

    def to(self, device: str | torch.device) -> Model:
        """Move the torch network to `device` (an ONNX session keeps the provider it was made with)."""
        if not self.is_onnx:
            self.net.to(device)
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = main_logits(self.net(x))
        if out.shape[1] != self.num_classes:  # e.g. an ONNX file with symbolic channels and wrong metadata
            raise ArtifactError(
                f"{self.source}: the network outputs {out.shape[1]} channels but the model has "
                f"{self.num_classes} classes; re-export it with stage=export"
            )
        return out


def load_model(path: str | Path, device: str = "cpu") -> Model:
    """A model from a training checkpoint (`*.ckpt`), exported weights (`*.safetensors`, `*.onnx`) or `zoo:<name>`.

    Checkpoints are read with `torch.load(weights_only=True)`; a `*.safetensors` file from
    `stage=export stage.format=safetensors` holds no pickle at all.

    `zoo:<name>` loads an entry of the shipped model zoo (`experiments/model_zoo/zoo.yaml`): its
    trained weights where the entry publishes them (`zoo:camvid`, checked against the stored sha256),
    else the architecture with random weights (useful to measure speed, not to segment).
    """
    text = str(path)
    if text.startswith(ZOO_PREFIX):
        return _from_zoo(text[len(ZOO_PREFIX) :])
    p = Path(text).expanduser()
    if not p.is_file():
        raise ArtifactError(
            f"model not found: {p}; pass a *.ckpt from stage=train, a *.safetensors or *.onnx from stage=export "
            "or zoo:<name>"
        )
    if p.suffix.lower() == ".onnx":
        return _from_onnx(p, device)
    return _from_checkpoint(p)


def _crop(value: Any) -> tuple[int, int] | None:
    return (int(value[0]), int(value[1])) if value else None


def _from_checkpoint(path: Path) -> Model:
    from omegaconf import OmegaConf, open_dict

    from rspnet.lit.seg_module import SegModule
    from rspnet.utils.checkpoint import read_checkpoint

    stored = (read_checkpoint(path).get("rspnet") or {}).get("config")
    cfg = OmegaConf.create(stored) if isinstance(stored, dict) else None
    if cfg is not None and "train" in cfg:
        with open_dict(cfg):
            cfg.train.compile = (
                False  # a checkpoint trained with train.compile=true: no minutes-long compile to predict
            )
    module, meta = SegModule.from_checkpoint(path, cfg)
    classes = list(meta.get("classes") or [str(i) for i in range(int(meta["num_classes"]))])
    palette = meta.get("palette") or default_palette(len(classes))
    crop = meta.get("config", {}).get("dataset", {}).get("crop_size")
    return Model(
        module.net.eval(),
        classes,
        [list(c) for c in palette],
        str(path),
        "safetensors" if path.suffix.lower() == ".safetensors" else "checkpoint",
        crop_size=_crop(crop),
        meta=meta,
    )


def _from_onnx(path: Path, device: str) -> Model:
    net = OnnxNet(path, device)
    try:
        meta = json.loads(net.metadata.get("rspnet", "{}"))
    except json.JSONDecodeError as e:
        raise ArtifactError(
            f"{path}: its rspnet metadata is not valid JSON ({e.msg}); re-export it with stage=export"
        ) from e
    dim = net.session.get_outputs()[0].shape[1]
    dim = dim if isinstance(dim, int) else None  # symbolic channels: Model.__call__ checks the logits instead
    k = meta.get("num_classes", dim)
    if k is None:  # an ONNX file from elsewhere with symbolic output channels
        raise ArtifactError(f"{path}: the number of classes is unknown (no rspnet metadata, symbolic output channels)")
    classes = list(meta.get("classes") or [str(i) for i in range(int(k))])
    palette = meta.get("palette") or default_palette(len(classes))
    _check_onnx_meta(path, int(k), dim, classes, palette)
    return Model(
        net, classes, [list(c) for c in palette], str(path), "onnx", crop_size=_crop(meta.get("crop_size")), meta=meta
    )


def _check_onnx_meta(path: Path, k: int, channels: int | None, classes: list, palette: Any) -> None:
    """The metadata's class count, class names and palette agree with the network's output channels."""
    fix = "re-export it with stage=export (the metadata does not describe this network)"
    if channels is not None and k != channels:
        raise ArtifactError(f"{path}: its metadata says {k} classes but the network outputs {channels} channels; {fix}")
    if len(classes) != k:
        raise ArtifactError(f"{path}: its metadata lists {len(classes)} class names for {k} classes; {fix}")
    rgb = isinstance(palette, list) and all(
        isinstance(c, list) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c) for c in palette
    )
    if not rgb or len(palette) != k:
        shown = f"{len(palette)} colours" if rgb else "entries that are not [R, G, B] values in 0..255"
        raise ArtifactError(f"{path}: its metadata palette has {shown} for {k} classes; {fix}")


def zoo_file() -> Path:
    """The model zoo file `zoo.yaml` (repo: `experiments/model_zoo/`, shipped as `rspnet.model_zoo`)."""
    from rspnet.resources import package_dir

    return package_dir("rspnet.model_zoo") / "zoo.yaml"


def zoo_entries() -> dict[str, dict[str, Any]]:
    """The zoo's entries by name."""
    import yaml

    path = zoo_file()
    if not path.is_file():
        raise ArtifactError(f"{path}: model zoo file not found")
    return {str(e["name"]): e for e in yaml.safe_load(path.read_text())["models"]}


def zoo_weights(entry: dict[str, Any]) -> Path | None:
    """The entry's weights file (beside zoo.yaml), or None for an architecture without published weights."""
    return zoo_file().parent / str(entry["weights"]) if entry.get("weights") else None


def build_zoo_net(entry: dict[str, Any]) -> tuple[torch.nn.Module, Any]:
    """(untrained derived net, composed config) of a zoo entry: its shipped genotype and macro, its config overrides."""
    from rspnet.architecture import DEFAULT_MACRO, load_macro
    from rspnet.composition import compose
    from rspnet.genotype import Genotype
    from rspnet.models.derived import DerivedNet
    from rspnet.resources import genotype_path, package_dir

    cfg = compose(*entry["overrides"])
    genotype = Genotype.load(genotype_path(entry["genotype"]))
    shipped = package_dir("rspnet.genotypes") / f"{entry['macro']}.json"
    macro = load_macro(cfg, None if entry["macro"] == DEFAULT_MACRO else shipped)
    return DerivedNet.from_cfg(cfg, genotype, macro, int(cfg.dataset.num_classes)), cfg


def _from_zoo(name: str) -> Model:
    from rspnet.data import dataset_module

    entries = zoo_entries()
    if name not in entries:
        raise ConfigError(f"zoo:{name} is not in {zoo_file().name}; choose one of: {', '.join(entries)}")
    weights = zoo_weights(entries[name])
    if weights is not None:
        return _trained_zoo(name, entries[name], weights)
    torch.manual_seed(0)
    net, cfg = build_zoo_net(entries[name])
    data = dataset_module(cfg)
    log.warning(
        "zoo:%s is an architecture with random weights (no trained weights are published): "
        "fine for measuring speed, its predictions are noise",
        name,
    )
    return Model(
        net.eval(),
        list(data.CLASSES),
        [list(c) for c in data.PALETTE],
        f"zoo:{name}",
        "zoo",
        trained=False,
        crop_size=_crop(cfg.dataset.get("crop_size")),
        meta=entries[name],
    )


def _trained_zoo(name: str, entry: dict[str, Any], weights: Path) -> Model:
    """A zoo entry with published weights: its safetensors file, checked against the sha256 in zoo.yaml."""
    if not weights.is_file():
        raise ArtifactError(f"zoo:{name}: weights file {weights} is missing; reinstall rspnet")
    if file_sha256(weights) != entry.get("sha256"):
        raise ArtifactError(
            f"zoo:{name}: {weights} does not match the sha256 in {zoo_file().name} (damaged or replaced); reinstall rspnet"
        )
    model = _from_checkpoint(weights)
    model.source, model.kind, model.meta = f"zoo:{name}", "zoo", {**model.meta, "zoo": entry}
    return model
