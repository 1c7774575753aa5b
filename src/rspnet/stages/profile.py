"""`stage=profile`: params, GMACs, latency and images/s of a model on this machine -> DIR/profile.json.

The model is `ckpt=` (a training checkpoint, an exported `model.onnx` or `zoo:<name>`), or else
the configured network (the `net` group: `genotype=`/`macro_arch=` for net=rspnet, as stage=summary) with random weights.
Latency is the median wall time of `stage.repeats` forward passes (no_grad, batch
`stage.batch_size` at `stage.size`) after `stage.warmup` untimed ones; on CUDA each pass is
synchronised. GMACs count the multiply-accumulates of convolutions and matrix products
(torch.utils.flop_counter for torch models, the graph's Conv/MatMul/Gemm nodes for ONNX);
GFLOPs = 2 x GMACs.
"""

from __future__ import annotations

import datetime
import logging
import math
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from omegaconf import DictConfig

from rspnet.api import Model, load_model
from rspnet.architecture import configured_net
from rspnet.errors import ConfigError
from rspnet.models import lut
from rspnet.models.blocks import Layout
from rspnet.models.cost import count_gflops
from rspnet.search_space.ops import PRIMITIVES
from rspnet.utils.io import atomic_write_json
from rspnet.utils.runtime import output_dir
from rspnet.utils.timing import device_name, time_forward

log = logging.getLogger(__name__)
PRECISIONS = ("fp32", "fp16")


def onnx_gmacs(path: str, size: tuple[int, int], batch: int = 1) -> float:
    """MACs (1e9) of the Conv/MatMul/Gemm nodes of an ONNX graph at `size`.

    The shapes come from one onnxruntime run with those nodes' tensors exposed as outputs
    (static shape inference cannot follow the size arithmetic of the resizes).
    """
    model = onnx.load(path)
    nodes = [n for n in model.graph.node if n.op_type in ("Conv", "MatMul", "Gemm")]
    known = {t.name: list(t.dims) for t in model.graph.initializer}
    have = {o.name for o in model.graph.output}
    wanted = {name for n in nodes for name in (n.input[0], n.input[1], n.output[0]) if name not in known}
    for name in sorted(wanted - have - {i.name for i in model.graph.input}):
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    x = np.zeros((batch, 3, *size), dtype=np.float32)
    shapes = {
        **known,
        **{n: list(v.shape) for n, v in zip(names, session.run(names, {session.get_inputs()[0].name: x}))},
        session.get_inputs()[0].name: list(x.shape),
    }
    macs = 0
    for node in nodes:
        out, a, w = shapes[node.output[0]], shapes[node.input[0]], shapes[node.input[1]]
        if node.op_type == "Conv":
            macs += math.prod(out) * math.prod(w[1:])  # per output element: Cin/groups * kh * kw
        elif node.op_type == "MatMul":
            macs += math.prod(out) * a[-1]
        else:
            trans_a = any(attr.name == "transA" and attr.i for attr in node.attribute)
            macs += math.prod(out) * (a[0] if trans_a else a[-1])
    return macs / 1e9


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"stage.device={name} is invalid; use auto, cpu or cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("stage.device=cuda: no CUDA device is visible; use stage.device=cpu")
    return torch.device(name)


def _model(cfg: DictConfig, device: torch.device) -> Any:
    """`ckpt=` through rspnet.load_model, else the configured network (`net` group) with random weights."""
    if cfg.get("ckpt"):
        return load_model(str(cfg.ckpt), device.type)
    torch.manual_seed(int(cfg.get("seed", 0)))
    k = int(cfg.dataset.num_classes)
    net = configured_net(cfg, k)
    return Model(net.eval(), [str(i) for i in range(k)], [[0, 0, 0]] * k, "config", "config", trained=False)


def run_lut(cfg: DictConfig, size: tuple[int, int]) -> dict:
    """`stage.mode=lut`: time every block of the preset's derived nets; merge into `stage.lut`, copy to DIR/lut.json."""
    opts, out = cfg.stage, output_dir(cfg)
    if _device(str(opts.get("device", "auto"))).type != "cpu" and str(opts.get("device")) != "auto":
        raise ConfigError("stage.mode=lut measures on the CPU; use stage.device=cpu (or auto)")
    warmup, repeats, rounds = int(opts.get("warmup", 3)), int(opts.get("repeats", 20)), int(opts.get("rounds", 3))
    if min(repeats, rounds) < 1 or warmup < 0:
        raise ConfigError("stage.repeats and stage.rounds must be >= 1, stage.warmup >= 0")
    blocks = Layout.from_cfg(cfg, size).all_blocks(PRIMITIVES)
    t0 = time.perf_counter()
    entries = lut.measure(blocks, warmup, repeats, rounds)
    key = lut.device_key()
    measured = {
        "date": datetime.date.today().isoformat(),
        "model": str(cfg.model.name),
        "input_size": list(size),
        "warmup": warmup,
        "repeats": repeats,
        "rounds": rounds,
        "statistic": "median wall ms, batch 1, inference mode",
    }
    path = lut.save(Path(str(opts.lut)), key, entries, measured)
    lut.save(out / "lut.json", key, entries, measured)
    log.info(
        "latency table: %d blocks of model=%s at %s in %.1f s -> %s [%s]",
        len(entries),
        cfg.model.name,
        list(size),
        time.perf_counter() - t0,
        path,
        key,
    )
    return {"lut": str(path), "run_lut": str(out / "lut.json"), "device_key": key, "blocks": len(entries)}


def run(cfg: DictConfig) -> dict:
    """Measure the model (or, with stage.mode=lut, build the latency table); write DIR/profile.json."""
    out = output_dir(cfg)
    opts = cfg.stage
    mode = str(opts.get("mode", "model"))
    if mode not in ("model", "lut"):
        raise ConfigError(f"stage.mode={mode} is invalid; use model (one network) or lut (the latency table)")
    if opts.get("threads"):
        torch.set_num_threads(int(opts.threads))
    if mode == "lut":
        return run_lut(cfg, tuple(int(v) for v in (opts.get("size") or cfg.dataset.crop_size)))
    precision = str(opts.get("precision", "fp32"))
    if precision not in PRECISIONS:
        raise ConfigError(f"stage.precision={precision} is invalid; use fp32 or fp16")
    device = _device(str(opts.get("device", "auto")))
    size = tuple(int(v) for v in (opts.get("size") or cfg.dataset.crop_size))
    batch, warmup, repeats = int(opts.get("batch_size", 1)), int(opts.get("warmup", 3)), int(opts.get("repeats", 20))
    if min(batch, repeats) < 1 or warmup < 0:
        raise ConfigError("stage.batch_size and stage.repeats must be >= 1, stage.warmup >= 0")
    model = _model(cfg, device)
    if precision == "fp16" and (device.type != "cuda" or model.is_onnx):
        raise ConfigError("stage.precision=fp16 needs stage.device=cuda and a torch model (not ONNX)")
    x = torch.randn(batch, 3, *size, device=device)
    if model.is_onnx:
        gmacs = onnx_gmacs(model.source, size)
    else:
        model.to(device)
        gmacs = count_gflops(model.net, size) / 2
        if precision == "fp16":
            model.net.half()
            x = x.half()
    times = time_forward(model, x, warmup, repeats)
    latency = statistics.median(times)
    report = {
        "model": model.source,
        "kind": model.kind,
        "trained": model.trained,
        "params": model.params(),
        "gmacs": round(gmacs, 3) if gmacs is not None else None,
        "gflops": round(2 * gmacs, 3) if gmacs is not None else None,
        "flops_convention": "GFLOPs = 2 x GMACs (multiply-accumulates of conv/matmul ops), batch 1",
        "input_size": list(size),
        "batch_size": batch,
        "precision": precision,
        "device": str(device),
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "warmup": warmup,
        "repeats": repeats,
        "latency_ms": round(1000 * latency, 3),
        "latency_ms_all": [round(1000 * t, 3) for t in times],
        "images_per_s": round(batch / latency, 3),
        "torch": torch.__version__,
    }
    atomic_write_json(out / "profile.json", report)
    _log_report(report)
    return {**report, "profile": str(out / "profile.json")}


def _log_report(report: dict) -> None:
    """One line: the model, its size and cost, where and how fast it ran."""
    log.info(
        "%s: %.2fM params, %s GMACs (%s GFLOPs) at %s; %s %s batch %d: %.1f ms median, %.2f images/s",
        report["model"],
        report["params"] / 1e6,
        report["gmacs"],
        report["gflops"],
        report["input_size"],
        report["device_name"],
        report["precision"],
        report["batch_size"],
        report["latency_ms"],
        report["images_per_s"],
    )
