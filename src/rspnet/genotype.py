"""Stage hand-off artifacts as plain data: `genotype.json` (cell) and `macro.json` (trellis).

Loading validates everything and raises one ArtifactError naming the file and the field;
saving is atomic. Formats: SPEC §3.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from rspnet.errors import ArtifactError
from rspnet.search_space.cell import EDGES
from rspnet.search_space.ops import PRIMITIVES
from rspnet.search_space.trellis import STEM  # (layer, scale) of the stem node; re-exported
from rspnet.utils.io import atomic_write_json, read_json

GENOTYPE_FORMAT = "rspnet.genotype/1"
MACRO_FORMAT = "rspnet.macro/1"
VALID_SCALES = (4, 8, 16, 32)
# where an architecture came from (optional top-level "provenance"; absent = legacy/unknown)
PROVENANCES = ("searched", "random", "preset")
# how a searched macro.json chose its inputs (`search.select`; absent = score, the paper)
MACRO_SELECTS = ("score", "perturb")


def _fail(source: str, fieldname: str, msg: str) -> ArtifactError:
    return ArtifactError(f"{source}: field '{fieldname}': {msg}")


def _get(d: Any, key: str, source: str, where: str, types: type | tuple[type, ...]) -> Any:
    if not isinstance(d, dict) or key not in d:
        raise _fail(source, f"{where}{key}", "missing")
    value = d[key]
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise _fail(source, f"{where}{key}", f"expected {types}, got a boolean")
    if not isinstance(value, types):
        names = "/".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        raise _fail(source, f"{where}{key}", f"expected {names}, got {type(value).__name__}")
    return value


def _check_format(d: Any, source: str, expected: str) -> None:
    fmt = _get(d, "format", source, "", str)
    if fmt != expected:
        raise _fail(source, "format", f"expected {expected!r}, got {fmt!r}")


def _provenance(d: dict, source: str) -> str | None:
    value = d.get("provenance")
    if value is not None and value not in PROVENANCES:
        raise _fail(source, "provenance", f"must be one of {', '.join(PROVENANCES)}, got {value!r}")
    return value


def _complete(d: dict, source: str) -> bool:
    """The optional `complete` field: false while the search that writes the file runs (absent = complete)."""
    value = d.get("complete", True)
    if not isinstance(value, bool):
        raise _fail(source, "complete", f"expected true or false, got {value!r}")
    return value


def refuse_incomplete(arch: Any, source: str) -> Any:
    """`arch` (a Genotype or MacroArch) if its search completed, else one ArtifactError saying how to finish it."""
    if not arch.complete:
        epochs, total = arch.search.get("epochs"), arch.search.get("max_epochs")
        raise ArtifactError(
            f'{source}: written by a search that has not completed (epoch {epochs} of {total}, "complete": false); '
            "resume that search with ckpt_path=last (same command and paths.output_dir) and use the file it then writes"
        )
    return arch


def _marker(complete: bool) -> dict[str, Any]:
    """The `complete` entry of a written artifact: present (false) only while its search runs."""
    return {} if complete else {"complete": False}


def normalized_entropy(probs: Sequence[float]) -> float:
    """Entropy of a distribution divided by log(len): 1 = uniform (decided nothing), 0 = one-hot."""
    p = [float(v) for v in probs]
    total = sum(p)
    if len(p) < 2 or total <= 0:
        return 0.0
    h = -sum(v / total * math.log(v / total) for v in p if v > 0)
    return h / math.log(len(p))


def _finite_number(w: Any) -> bool:
    """A JSON number that is a finite float (an int too large for a float is not: fuzzing found 10**300)."""
    if isinstance(w, bool) or not isinstance(w, (int, float)):
        return False
    try:
        return math.isfinite(w)
    except OverflowError:
        return False


A = TypeVar("A", bound="_JsonArtifact")


class _JsonArtifact:
    """save/load of an artifact dataclass with `to_dict` / `from_dict(d, source=)`; KIND names it in errors."""

    KIND: ClassVar[str]

    def save(self, path: str | Path) -> Path:
        """Atomic JSON write."""
        return atomic_write_json(path, self.to_dict())  # type: ignore[attr-defined]

    @classmethod
    def load(cls: type[A], path: str | Path, allow_incomplete: bool = False) -> A:
        """Read and validate; an artifact of a search that has not completed is refused unless `allow_incomplete`."""
        artifact = cls.from_dict(read_json(path, cls.KIND), source=str(path))  # type: ignore[attr-defined]
        return artifact if allow_incomplete else refuse_incomplete(artifact, str(path))


def _search_meta(d: dict, source: str) -> dict[str, Any]:
    search = d.get("search", {})
    if not isinstance(search, dict):
        raise _fail(source, "search", "expected an object")
    return search


@dataclass(frozen=True)
class Edge:
    """One cell edge with the chosen op and the softmax weights of all primitives."""

    src: int
    dst: int
    op: str
    weights: tuple[float, ...]


def _edge(e: Any, where: str, source: str, seen: set[tuple[int, int]]) -> Edge:
    """One validated `edges[i]` entry of genotype.json (`seen`: the edges before it, to refuse a repeat)."""
    src, dst = _get(e, "src", source, where, int), _get(e, "dst", source, where, int)
    if (src, dst) not in EDGES:
        raise _fail(source, f"{where}src/dst", f"({src}, {dst}) is not an edge; valid edges: {EDGES}")
    if (src, dst) in seen:
        raise _fail(source, f"{where}src/dst", f"edge ({src}, {dst}) appears twice")
    seen.add((src, dst))
    op = _get(e, "op", source, where, str)
    if op not in PRIMITIVES:
        raise _fail(source, f"{where}op", f"unknown op {op!r}; valid ops: {', '.join(PRIMITIVES)}")
    weights = e.get("weights", [])
    if not isinstance(weights, list) or (weights and len(weights) != len(PRIMITIVES)):
        raise _fail(source, f"{where}weights", f"expected {len(PRIMITIVES)} numbers")
    if not all(_finite_number(w) for w in weights):
        raise _fail(source, f"{where}weights", "must be finite numbers")
    return Edge(src, dst, op, tuple(float(w) for w in weights))


@dataclass
class Genotype(_JsonArtifact):
    """The searched Norm-Cell: one op per edge of EDGES."""

    KIND: ClassVar[str] = "genotype"

    edges: list[Edge]
    rsp: bool = True
    primitives: list[str] = field(default_factory=lambda: list(PRIMITIVES))
    search: dict[str, Any] = field(default_factory=dict)
    provenance: str | None = None
    complete: bool = True  # false: exported by a search still running (or stopped) — loaders refuse it

    @property
    def ops(self) -> list[str]:
        """Op names in EDGES order."""
        by_edge = {(e.src, e.dst): e.op for e in self.edges}
        return [by_edge[edge] for edge in EDGES]

    @classmethod
    def from_weights(
        cls,
        weights: Sequence[Sequence[float]],
        rsp: bool,
        search: dict | None = None,
        ops: Sequence[str] | None = None,
    ) -> Genotype:
        """Derive from softmax(alpha) [3, 5]: per edge `ops[i]` if given (another selection rule's choice),
        else the op with the largest weight."""
        if ops is not None and (len(ops) != len(EDGES) or any(op not in PRIMITIVES for op in ops)):
            raise ArtifactError(f"ops {list(ops)}: need {len(EDGES)} op names (one per edge) from {PRIMITIVES}")
        edges = []
        for i, ((src, dst), row) in enumerate(zip(EDGES, weights)):
            row = [float(w) for w in row]
            if not all(math.isfinite(w) for w in row):
                raise ArtifactError(
                    f"edge {src}->{dst}: architecture weights are not finite ({row}); not writing a genotype"
                )
            best = PRIMITIVES[max(range(len(row)), key=row.__getitem__)] if ops is None else ops[i]
            edges.append(Edge(src, dst, best, tuple(row)))
        return cls(edges=edges, rsp=rsp, search=dict(search or {}))

    @classmethod
    def from_ops(cls, ops: Sequence[str], rsp: bool = True, search: dict | None = None) -> Genotype:
        """A hand-written cell: one op name per edge of EDGES (weights one-hot, as a decided search)."""
        if len(ops) != len(EDGES) or any(op not in PRIMITIVES for op in ops):
            raise ArtifactError(f"ops {list(ops)}: need {len(EDGES)} op names (one per edge) from {PRIMITIVES}")
        return cls.from_weights([[float(op == p) for p in PRIMITIVES] for op in ops], rsp, search)

    def to_dict(self) -> dict[str, Any]:
        return (
            {
                "format": GENOTYPE_FORMAT,
                "primitives": list(self.primitives),
                "rsp": bool(self.rsp),
                "edges": [{"src": e.src, "dst": e.dst, "op": e.op, "weights": list(e.weights)} for e in self.edges],
                "search": dict(self.search),
            }
            | ({"provenance": self.provenance} if self.provenance else {})
            | _marker(self.complete)
        )

    @classmethod
    def from_dict(cls, d: Any, source: str = "genotype") -> Genotype:
        """Validate and build; errors name `source` and the field."""
        _check_format(d, source, GENOTYPE_FORMAT)
        prims = _get(d, "primitives", source, "", list)
        if prims != PRIMITIVES:
            raise _fail(source, "primitives", f"expected {PRIMITIVES}, got {prims}")
        rsp = _get(d, "rsp", source, "", bool)
        raw = _get(d, "edges", source, "", list)
        if len(raw) != len(EDGES):
            raise _fail(source, "edges", f"a Norm-Cell has {len(EDGES)} edges, got {len(raw)}")
        seen: set[tuple[int, int]] = set()
        edges = [_edge(e, f"edges[{i}].", source, seen) for i, e in enumerate(raw)]
        search = _search_meta(d, source)
        return cls(
            edges=edges,
            rsp=rsp,
            primitives=list(prims),
            search=search,
            provenance=_provenance(d, source),
            complete=_complete(d, source),
        )


@dataclass(frozen=True)
class MacroInput:
    """A chosen input path of a node: the source node and its path importance."""

    layer: int
    scale: int
    score: float


@dataclass(frozen=True)
class MacroNode:
    layer: int
    scale: int
    inputs: tuple[MacroInput, ...]


def _macro_input(
    inp: Any, w: str, layer: int, grid: tuple[set, list], srcs: set[tuple[int, int]], source: str
) -> MacroInput:
    """One validated `nodes[i].inputs[j]` of macro.json into a node at `layer` (`srcs`: the node's inputs so far).

    `grid`: (the known nodes, stem included; the file's scales).
    """
    known, scales = grid
    il, isc = _get(inp, "layer", source, w, int), _get(inp, "scale", source, w, int)
    score = _get(inp, "score", source, w, (int, float))
    if il >= layer:
        raise _fail(
            source,
            f"{w}layer",
            f"input from layer {il} into node at layer {layer}: inputs must come from earlier layers",
        )
    if (il, isc) not in known:
        raise _fail(
            source,
            f"{w}scale",
            f"({il}, {isc}) is not a node (layer 0 is the stem at scale {STEM[1]}; scales are {scales})",
        )
    if (il, isc) in srcs:
        raise _fail(source, w.rstrip("."), f"input ({il}, {isc}) appears twice")
    if not math.isfinite(score):
        raise _fail(source, f"{w}score", "must be finite")
    srcs.add((il, isc))
    return MacroInput(il, isc, float(score))


@dataclass
class MacroArch(_JsonArtifact):
    """The searched trellis: for every node (layer >= 1, scale) its top-k input nodes."""

    KIND: ClassVar[str] = "macro"

    layers: int
    scales: list[int]
    top_k: int
    nodes: list[MacroNode]
    search: dict[str, Any] = field(default_factory=dict)
    provenance: str | None = None
    complete: bool = True  # false: exported by a search still running (or stopped) — loaders refuse it

    def node(self, layer: int, scale: int) -> MacroNode:
        for n in self.nodes:
            if (n.layer, n.scale) == (layer, scale):
                return n
        raise KeyError((layer, scale))

    def to_dict(self) -> dict[str, Any]:
        return (
            {
                "format": MACRO_FORMAT,
                "layers": self.layers,
                "scales": list(self.scales),
                "top_k": self.top_k,
                "nodes": [
                    {
                        "layer": n.layer,
                        "scale": n.scale,
                        "inputs": [{"layer": i.layer, "scale": i.scale, "score": i.score} for i in n.inputs],
                    }
                    for n in self.nodes
                ],
                "search": dict(self.search),
            }
            | ({"provenance": self.provenance} if self.provenance else {})
            | _marker(self.complete)
        )

    @classmethod
    def from_dict(cls, d: Any, source: str = "macro") -> MacroArch:
        """Validate: format, scales, every node of layers 1..L once, inputs from earlier layers."""
        _check_format(d, source, MACRO_FORMAT)
        layers = _get(d, "layers", source, "", int)
        if layers < 1:
            raise _fail(source, "layers", f"must be >= 1, got {layers}")
        scales = _get(d, "scales", source, "", list)
        if not scales or any(s not in VALID_SCALES for s in scales) or sorted(set(scales)) != scales:
            raise _fail(source, "scales", f"must be an increasing subset of {list(VALID_SCALES)}, got {scales}")
        if scales[0] != STEM[1]:
            raise _fail(source, "scales", f"must start at the stem scale {STEM[1]}, got {scales}")
        top_k = _get(d, "top_k", source, "", int)
        if top_k < 1:
            raise _fail(source, "top_k", f"must be >= 1, got {top_k}")
        raw = _get(d, "nodes", source, "", list)
        known = {STEM} | {(l, s) for l in range(1, layers + 1) for s in scales}
        nodes, seen = [], set()
        for i, n in enumerate(raw):
            where = f"nodes[{i}]."
            layer, scale = _get(n, "layer", source, where, int), _get(n, "scale", source, where, int)
            if not 1 <= layer <= layers:
                raise _fail(source, f"{where}layer", f"must be in 1..{layers}, got {layer}")
            if scale not in scales:
                raise _fail(source, f"{where}scale", f"unknown scale {scale}; scales are {scales}")
            if (layer, scale) in seen:
                raise _fail(source, where.rstrip("."), f"node ({layer}, {scale}) appears twice")
            seen.add((layer, scale))
            ins = _get(n, "inputs", source, where, list)
            if not 1 <= len(ins) <= top_k:
                raise _fail(source, f"{where}inputs", f"expected 1..top_k={top_k} inputs, got {len(ins)}")
            srcs: set[tuple[int, int]] = set()
            parsed = [
                _macro_input(inp, f"{where}inputs[{j}].", layer, (known, scales), srcs, source)
                for j, inp in enumerate(ins)
            ]
            nodes.append(MacroNode(layer, scale, tuple(parsed)))
        missing = sorted(known - {STEM} - seen)
        if missing:
            raise _fail(source, "nodes", f"missing nodes (layer, scale): {missing}")
        search = _search_meta(d, source)
        # optional (absent before selection by perturbation): how the inputs were chosen
        if search.get("select", "score") not in MACRO_SELECTS:
            raise _fail(source, "search.select", f"must be one of {', '.join(MACRO_SELECTS)}, got {search['select']!r}")
        return cls(
            layers=layers,
            scales=list(scales),
            top_k=top_k,
            nodes=nodes,
            search=search,
            provenance=_provenance(d, source),
            complete=_complete(d, source),
        )
