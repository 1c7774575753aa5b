"""Calibrate the `model=paper` preset against paper Table 1 (68.67M params RSP off, 17.20M on).

A recipe script (it chooses `model.layers` of `conf/model/paper.yaml` and the shipped
`experiments/genotypes/paper_like.json`). Searches, honestly and exhaustively, the
derived-network depth L (default_macro trellis,
N = 4 cells per node, B = 48) and every cell genotype (params depend only on the multiset of
the three edge ops) for both heads, and ranks the candidates by their worst relative error
against the two targets. Models are built on the meta device, so this takes a few minutes on CPU.

    python -m experiments.calibrate_paper [--top 15]
"""

from __future__ import annotations

import argparse
import itertools

import torch
from omegaconf import DictConfig, open_dict

from rspnet.composition import compose
from rspnet.genotype import Genotype
from rspnet.models.cost import summarize
from rspnet.models.derived import default_macro
from rspnet.search_space.ops import PRIMITIVES

TARGET_OFF, TARGET_ON = 68.67e6, 17.20e6


def paper_cfg(*overrides: str) -> DictConfig:
    """The composed `model=paper` config with extra overrides."""
    return compose("model=paper", "logger=none", *overrides)


def genotype_of(ops: tuple[str, ...]) -> Genotype:
    """A Genotype with `ops` on edges (0,1), (0,2), (1,2) (one-hot weights)."""
    return Genotype.from_ops(ops, rsp=True)


def params(cfg: DictConfig, ops: tuple[str, ...], layers: int, rsp: str, head: str) -> dict[str, int]:
    """Parameter counts by part for one candidate."""
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.model.layers = layers
        cfg.rsp.enabled = rsp == "on"
        cfg.head.name = head
    return summarize(cfg, genotype_of(ops), default_macro(cfg), flops=False)["params_by_part"]


def main() -> None:
    """Print a markdown table of the best candidates (and the head sizes)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--max-layers", type=int, default=12)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = paper_cfg()
    ops0 = (PRIMITIVES[0],) * 3
    heads = {h: params(cfg, ops0, 1, "off", h)["head"] for h in ("fcn", "ocr")}  # independent of the trellis
    rows = []
    for ops in itertools.combinations_with_replacement(PRIMITIVES, 3):
        for layers in range(1, args.max_layers + 1):
            on, off = (params(cfg, ops, layers, rsp, "fcn") for rsp in ("on", "off"))
            for head, head_params in heads.items():
                p_off = off["stem"] + off["trellis"] + head_params
                p_on = on["stem"] + on["trellis"] + head_params
                err = max(abs(p_off / TARGET_OFF - 1), abs(p_on / TARGET_ON - 1))
                rows.append((err, ops, layers, head, p_off, p_on))
    rows.sort(key=lambda r: r[0])
    print(
        f"head params: fcn {heads['fcn'] / 1e6:.2f}M, ocr {heads['ocr'] / 1e6:.2f}M; "
        f"{len(rows)} candidates (L = 1..{args.max_layers}, N = 4, B = 48, default_macro)\n"
    )
    print(
        "| rank | cell ops (0->1, 0->2, 1->2) | L | head | params RSP off (M) | params RSP on (M) | off err | on err | worst |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for rank, (err, ops, layers, head, p_off, p_on) in enumerate(rows[: args.top], 1):
        print(
            f"| {rank} | {', '.join(ops)} | {layers} | {head} | {p_off / 1e6:.2f} | {p_on / 1e6:.2f} | "
            f"{p_off / TARGET_OFF - 1:+.1%} | {p_on / TARGET_ON - 1:+.1%} | {err:.1%} |"
        )
    best_ocr = next(r for r in rows if r[3] == "ocr")
    print(
        f"\nbest with the OCR head: rank {rows.index(best_ocr) + 1}, {', '.join(best_ocr[1])}, L={best_ocr[2]}, "
        f"off {best_ocr[4] / 1e6:.2f}M, on {best_ocr[5] / 1e6:.2f}M, worst error {best_ocr[0]:.1%}"
    )


if __name__ == "__main__":
    main()
