"""The derived network as a multiset of measurable blocks: stem, path alignments, cell skeletons, ops, head.

A block is plain data (its kind and shapes; `key` names it in a latency table) that can build
its module and an example input. Every derived net (`net_blocks`) is the sum of its blocks: the
parameters add up exactly, and a latency table's prediction is the sum of the blocks' medians
(the elementwise sums of a node's aligned inputs are not timed). `preset_blocks` lists every
block any derived net of a model preset can use, which is what `stage=profile stage.mode=lut`
measures.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from rspnet.genotype import MacroArch
from rspnet.models.derived import live_nodes
from rspnet.models.heads import build_head
from rspnet.search_space.cell import EDGES, RSP, FixedCell
from rspnet.search_space.ops import make_op
from rspnet.search_space.trellis import STEM_SCALE, Align, Stem, node_sizes, scale_width

Size = tuple[int, int]
SKIP = "skip_connect"  # the op with no parameters: a cell of three skips is the cell's skeleton


@dataclass(frozen=True)
class Block:
    """One measurable part: `kind` in stem | align | cell | op | head, with the shapes it runs at."""

    kind: str
    c_in: int
    c_out: int
    size_in: Size
    size: Size
    extra: tuple = ()  # op: (name,); cell: (rsp, shuffle); head: (name, widths, classes, channels...)

    @property
    def key(self) -> str:
        """Stable name in a latency table, e.g. `op:conv_3x3:c8:16x32` or `align:c8>16:16x32>8x16`."""
        extra = ":".join(_text(e) for e in self.extra)
        if self.kind == "cell":
            extra = f"rsp-{_text(self.extra[0])}:shuffle-{_text(self.extra[1])}"
        shape = f"c{self.c_in}>{self.c_out}:{_hw(self.size_in)}>{_hw(self.size)}"
        if self.kind in ("op", "cell"):
            shape = f"c{self.c_in}:{_hw(self.size)}"
        return ":".join(p for p in (self.kind, extra, shape) if p)

    def build(self) -> nn.Module:
        """The block's module (as in the derived network: affine BN) behind a `forward(*example())`."""
        if self.kind == "stem":
            return Stem(self.c_in, self.c_out)
        if self.kind == "op":
            return make_op(self.extra[0], self.c_in)
        if self.kind == "cell":
            rsp, shuffle = self.extra
            return RSP(self.c_in, lambda c: FixedCell(c, [SKIP] * len(EDGES)), enabled=rsp, shuffle=shuffle)
        if self.kind == "align":
            return _Sized(Align(self.c_in, self.c_out), self.size)
        if self.kind == "head":
            name, widths, _, classes, *channels = self.extra
            return _Sized(build_head(_head_cfg(name, channels), list(widths), classes), self.size)
        raise ValueError(f"unknown block kind {self.kind!r}")

    def example(self) -> tuple:
        """The forward arguments the block sees in the derived network, batch 1 (zeros)."""
        if self.kind == "head":  # size_in = the stem's (scale-4) size; one feature map per scale
            _, widths, scales, *_ = self.extra
            sizes = node_sizes(self.size_in, scales)
            return ([torch.zeros(1, c, *sizes[s]) for c, s in zip(widths, scales)],)
        return (torch.zeros(1, self.c_in, *self.size_in),)


class _Sized(nn.Module):
    """`module(x, size)` as `forward(x)`: the alignment and the head take the output size."""

    def __init__(self, module: nn.Module, size: Size) -> None:
        super().__init__()
        self.module, self.size = module, tuple(size)

    def forward(self, x: torch.Tensor | list[torch.Tensor]) -> torch.Tensor | dict:
        return self.module(x, self.size)


def _text(v: object) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, (tuple, list)):
        return "-".join(str(x) for x in v)
    return str(v)


def _hw(size: Size) -> str:
    return f"{size[0]}x{size[1]}"


def _head_cfg(name: str, channels: Sequence[int]) -> DictConfig:
    """The config keys `build_head` reads, from a head block's channels."""
    model = (
        {"head_channels": channels[0]}
        if name == "fcn"
        else dict(zip(("ocr_mid_channels", "ocr_key_channels"), channels))
    )
    return OmegaConf.create({"head": {"name": name}, "model": model})


def head_channels(cfg: DictConfig) -> tuple[int, ...]:
    """The widths that size the configured head (FCN: head_channels; OCR: mid, key)."""
    m = cfg.model
    return (
        (int(m.head_channels),) if str(cfg.head.name) == "fcn" else (int(m.ocr_mid_channels), int(m.ocr_key_channels))
    )


@dataclass(frozen=True)
class Layout:
    """What fixes the blocks of a model preset's derived nets: image size, widths, depth, RSP, head, classes."""

    image: Size
    scales: tuple[int, ...]
    base_width: int
    cells_per_node: int
    rsp: bool
    shuffle: bool
    head: tuple  # (name, *channels)
    classes: int

    @classmethod
    def from_cfg(cls, cfg: DictConfig, size: Sequence[int] | None = None) -> Layout:
        """From `cfg.model`/`rsp`/`head`/`dataset` at `size` (default `dataset.crop_size`), batch 1."""
        image = tuple(int(v) for v in (size or cfg.dataset.crop_size))
        return cls(
            image=image,  # type: ignore[arg-type]
            scales=tuple(int(s) for s in cfg.model.scales),
            base_width=int(cfg.model.base_width),
            cells_per_node=int(cfg.model.cells_per_node),
            rsp=bool(cfg.rsp.enabled),
            shuffle=bool(cfg.rsp.get("shuffle", True)),
            head=(str(cfg.head.name), *head_channels(cfg)),
            classes=int(cfg.dataset.num_classes),
        )

    def width(self, scale: int) -> int:
        return scale_width(self.base_width, scale)

    def size(self, scale: int) -> Size:
        stem = tuple(-(-v // STEM_SCALE) for v in self.image)  # two stride-2 convs: ceil(H / 4)
        return tuple(node_sizes(stem, [scale])[scale])  # type: ignore[return-value]

    def stem(self) -> Block:
        return Block("stem", 3, self.width(STEM_SCALE), self.image, self.size(STEM_SCALE))

    def align(self, src: int, dst: int) -> Block:
        return Block("align", self.width(src), self.width(dst), self.size(src), self.size(dst))

    def cell(self, scale: int) -> Block:
        w = self.width(scale)
        return Block("cell", w, w, self.size(scale), self.size(scale), (self.rsp, self.shuffle))

    def op(self, name: str, scale: int) -> Block:
        c = self.width(scale) // 2 if self.rsp else self.width(scale)
        return Block("op", c, c, self.size(scale), self.size(scale), (name,))

    def head_block(self) -> Block:
        name, *channels = self.head
        widths = tuple(self.width(s) for s in self.scales)
        extra = (name, widths, self.scales, self.classes, *channels)
        return Block("head", sum(widths), self.classes, self.size(STEM_SCALE), self.image, extra)

    def net_blocks(self, ops: Sequence[str] | None, macro: MacroArch) -> Counter[Block]:
        """The blocks of the derived net of `macro` with cell `ops` (None: the skeleton, cells without ops)."""
        blocks: Counter[Block] = Counter([self.stem(), self.head_block()])
        for node in live_nodes(macro):
            blocks.update(self.align(i.scale, node[1]) for i in macro.node(*node).inputs)
            blocks[self.cell(node[1])] += self.cells_per_node
            for name in ops or ():
                blocks[self.op(name, node[1])] += self.cells_per_node
        return blocks

    def op_cells(self, macro: MacroArch) -> Counter[int]:
        """Scale -> how many cells of that scale the derived net of `macro` has (each holds every edge's op)."""
        return Counter({s: self.cells_per_node * n for s, n in Counter(s for _, s in live_nodes(macro)).items()})

    def all_blocks(self, primitives: Sequence[str]) -> list[Block]:
        """Every block a derived net of this preset can use (what a latency table must hold)."""
        blocks = [self.stem(), self.head_block()]
        for dst in self.scales:
            blocks += [self.cell(dst)] + [self.op(name, dst) for name in primitives]
            blocks += [self.align(src, dst) for src in self.scales]
        return blocks


@lru_cache(maxsize=4096)
def block_params(block: Block) -> int:
    """Parameters of a block (built on the meta device: no memory, no init)."""
    with torch.device("meta"):
        return sum(p.numel() for p in block.build().parameters())


def forward_flops(module: nn.Module, *args: object) -> int:
    """FLOPs of `module.eval()(*args)` as `torch.utils.flop_counter` counts them: 2 per multiply-accumulate
    of conv/matmul-type ops, nothing for additions, upsampling or reshapes (any device, `meta` included)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module.eval()(*args)
    return counter.get_total_flops()


@lru_cache(maxsize=4096)
def block_macs(block: Block) -> int:
    """Multiply-accumulates of one batch-1 forward of a block (built and run on the meta device: shapes
    only, no memory, no arithmetic); the blocks of a derived net add up to its `count_gflops` / 2."""
    with torch.device("meta"):
        module, args = block.build(), block.example()
    return forward_flops(module, *args) // 2
