"""`stage=export ckpt=PATH`: ONNX with dynamic batch/H/W, checked against PyTorch with onnxruntime,
or (`stage.format=safetensors`) the weights plus the metadata that rebuilds the net, a file that cannot run code.

The network is exported in eval mode with constant folding, so every BatchNorm that follows a
convolution is folded into it (export.json counts the BatchNormalization nodes left). The
parity check runs at a size different from the traced one, which proves H, W are dynamic.
`model.onnx` is only written once the check passed. `model.safetensors` holds the network's
state dict with the checkpoint's `rspnet` metadata (genotype, macro, model/rsp/head config,
classes, palette, format) as JSON in its header; `rspnet.load_model` and every `ckpt=` read it.
"""

from __future__ import annotations

import io
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from omegaconf import DictConfig
from torch import nn

from rspnet.errors import ArtifactError, ConfigError
from rspnet.inference import main_logits
from rspnet.lit.seg_module import SegModule
from rspnet.utils.checkpoint import WEIGHTS_FORMAT, safetensors_bytes
from rspnet.utils.io import atomic_write_bytes, atomic_write_json
from rspnet.utils.runtime import output_dir, require

log = logging.getLogger(__name__)
INPUT, OUTPUT = "image", "logits"
MIN_SIZE = 64  # at stride 32 this leaves >= 2 pixels, so the scales' sizes all differ when traced
FORMATS = ("onnx", "safetensors")


class LogitsOnly(nn.Module):
    """ONNX wants tensors out: the derived net's {"out": ...} -> the logits tensor."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return main_logits(self.net(x))


def export_onnx(net: nn.Module, size: tuple[int, int], opset: int = 17) -> bytes:
    """Trace `net` (eval mode, BN folded) at batch 1 x `size` -> ONNX bytes with dynamic batch, H, W."""
    if min(size) < MIN_SIZE:
        raise ArtifactError(
            f"export size {list(size)} is too small to trace (min {MIN_SIZE} per side); set stage.size=[H,W]"
        )
    model = LogitsOnly(net).eval()
    buf = io.BytesIO()
    dims = {0: "batch", 2: "height", 3: "width"}
    with torch.no_grad(), warnings.catch_warnings():
        # Align's "resize only if the size differs" test is traced as a constant; that is right
        # for any input: same-scale paths never need a resize, cross-scale paths always do
        # (as long as the traced size keeps the scales apart, which `min_size` ensures)
        warnings.filterwarnings(
            "ignore", message="Converting a tensor to a Python boolean", category=torch.jit.TracerWarning
        )
        # the TorchScript exporter handles our size arithmetic symbolically; dynamo=True needs onnxscript rewrites
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, *size),),
            buf,
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT],
            output_names=[OUTPUT],
            do_constant_folding=True,
            dynamic_axes={INPUT: dims, OUTPUT: dims},
        )
    return buf.getvalue()


def onnx_parity(onnx_bytes: bytes, net: nn.Module, size: tuple[int, int], seed: int = 0) -> float:
    """Max abs logit difference onnxruntime vs PyTorch on a random batch-2 input of `size`."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = LogitsOnly(net).eval()(x).numpy()
    got = session.run([OUTPUT], {INPUT: x.numpy()})[0]
    if got.shape != ref.shape:
        raise ArtifactError(f"ONNX output shape {list(got.shape)} != PyTorch {list(ref.shape)} at input {list(size)}")
    return float(np.abs(got - ref).max())


def with_metadata(onnx_bytes: bytes, meta: dict) -> bytes:
    """The model with `meta` (classes, palette, ...) as JSON under the `rspnet` metadata key (`rspnet.load_model` reads it)."""
    model = onnx.load_from_string(onnx_bytes)
    entry = model.metadata_props.add()
    entry.key, entry.value = "rspnet", json.dumps(meta)
    return model.SerializeToString()


def count_batchnorms(onnx_bytes: bytes) -> int:
    """BatchNormalization nodes left in the graph (0 when every BN was folded into its conv)."""
    return sum(node.op_type == "BatchNormalization" for node in onnx.load_from_string(onnx_bytes).graph.node)


def run(cfg: DictConfig) -> dict:
    """Export `ckpt=` to DIR/model.onnx (or DIR/model.safetensors) + DIR/export.json."""
    out = output_dir(cfg)
    ckpt = require(
        cfg, "ckpt", "pass ckpt=PATH to a checkpoint written by stage=train (e.g. DIR/checkpoints/best.ckpt)"
    )
    fmt = str(cfg.stage.get("format") or "onnx")
    if fmt not in FORMATS:
        raise ConfigError(f"stage.format={fmt}: choose one of {', '.join(FORMATS)}")
    module, meta = SegModule.from_checkpoint(ckpt, cfg)
    net = module.net.cpu().eval()
    if fmt == "safetensors":
        return export_safetensors(net, meta, out, ckpt)
    return export_checked_onnx(cfg, net, meta, out, ckpt)


def export_safetensors(net: nn.Module, meta: dict, out: Path, ckpt: str) -> dict:
    """DIR/model.safetensors: the network's state dict, `meta` (the checkpoint's `rspnet`) as JSON in the header."""
    state = net.state_dict()
    atomic_write_bytes(out / "model.safetensors", safetensors_bytes(state, meta))
    report = {
        "format": "safetensors",
        "safetensors": str(out / "model.safetensors"),
        "checkpoint": str(ckpt),
        "weights_format": WEIGHTS_FORMAT,
        "checkpoint_format": meta.get("format"),
        "tensors": len(state),
        "num_classes": int(meta["num_classes"]),
        "classes": meta.get("classes"),
        "params": sum(p.numel() for p in net.parameters()),
    }
    atomic_write_json(out / "export.json", report)
    log.info("exported %s (%d tensors)", out / "model.safetensors", len(state))
    return report


def export_checked_onnx(cfg: DictConfig, net: nn.Module, meta: dict, out: Path, ckpt: str) -> dict:
    """DIR/model.onnx + export.json; a failed parity check is an ArtifactError and writes no model.onnx."""
    opts = cfg.stage
    size = tuple(int(v) for v in (opts.get("size") or cfg.dataset.crop_size))
    check = (size[0] + 13, size[1] + 7)  # odd and different from the traced size: H, W must be dynamic
    opset, tol = int(opts.get("opset", 17)), float(opts.get("tolerance", 1e-3))
    try:
        onnx_bytes = export_onnx(net, size, opset)
    except Exception as e:  # noqa: BLE001 - the exporter raises many types; report one line
        raise ArtifactError(f"{ckpt}: ONNX export failed ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from e
    crop = meta.get("config", {}).get("dataset", {}).get("crop_size")  # the training crop: Segmenter's slide window
    onnx_bytes = with_metadata(
        onnx_bytes,
        {
            "num_classes": int(meta["num_classes"]),
            "classes": meta.get("classes"),
            "palette": meta.get("palette"),
            "crop_size": list(crop) if crop else None,
        },
    )
    diff = onnx_parity(onnx_bytes, net, check)
    report = {
        "format": "onnx",
        "onnx": str(out / "model.onnx"),
        "checkpoint": str(ckpt),
        "opset": opset,
        "export_size": list(size),
        "check_size": list(check),
        "max_abs_diff": diff if np.isfinite(diff) else None,
        "tolerance": tol,
        "passed": bool(diff <= tol),
        "dynamic_axes": ["batch", "height", "width"],
        "batchnorm_nodes": count_batchnorms(onnx_bytes),
        "num_classes": int(meta["num_classes"]),
        "classes": meta.get("classes"),
        "params": sum(p.numel() for p in net.parameters()),
    }
    atomic_write_json(out / "export.json", report)
    if not report["passed"]:
        raise ArtifactError(
            f"{ckpt}: onnxruntime logits differ from PyTorch by {diff:.3g} > stage.tolerance={tol:g} "
            f"at input {list(check)}; model.onnx not written (details in {out / 'export.json'})"
        )
    atomic_write_bytes(out / "model.onnx", onnx_bytes)
    log.info("exported %s (max abs logit diff %.2e at %s)", out / "model.onnx", diff, list(check))
    return report
