"""The model zoo `experiments/model_zoo/zoo.yaml`: recompute its numbers, check its weights, fail when they disagree.

    python -m experiments.zoo --check            # exit 1 listing every entry whose numbers differ
    python -m experiments.zoo --check --no-eval  # the same without evaluating the published weights
    python -m experiments.zoo --write            # rewrite params / gmacs in zoo.yaml (the rest is kept)

Params and GMACs come from the network built on the `meta` device (no memory, seconds even for
the paper preset) at each entry's `input_size`; GMACs = FLOPs / 2 of `torch.utils.flop_counter`
(conv/matmul only), batch 1. `rspnet.load_model("zoo:<name>")` builds the same network.

An entry with published weights (`weights: FILE` beside zoo.yaml) is checked further: the file's
sha256, its classes and palette against the entry's, the weights against the entry's architecture
(strict load), the data copy's fingerprint, and its `miou` against `stage=eval` of the file under the
stored protocol (`scored_on`) when that data is present at `scored_on.root` (relative to the repo
root); absent data is reported as skipped, never as agreeing.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from rspnet.api import build_zoo_net, zoo_entries, zoo_file, zoo_weights
from rspnet.errors import ArtifactError
from rspnet.models.cost import count_gflops
from rspnet.utils.checkpoint import load_net_weights, net_state, read_checkpoint
from rspnet.utils.io import file_sha256

REPO = Path(__file__).resolve().parents[1]
MIOU_TOL = 5e-4  # `miou` is stored to 4 decimals; float differences between CPUs move it far less


def measure(entry: dict[str, Any]) -> dict[str, float]:
    """{"params", "gmacs"} of a zoo entry's network at its input size."""
    with torch.device("meta"):
        net, _ = build_zoo_net(entry)
    size = tuple(int(v) for v in entry["input_size"])
    return {"params": sum(p.numel() for p in net.parameters()), "gmacs": round(count_gflops(net, size) / 2, 2)}


def data_fingerprint(root: Path, split: str) -> str:
    """sha256 over the names and sha256s of `root/<split>/*` and `root/<split>annot/*` (SegNet CamVid layout)."""
    files = sorted(p for folder in (split, f"{split}annot") for p in (root / folder).glob("*") if p.is_file())
    lines = "".join(f"{p.relative_to(root).as_posix()} {file_sha256(p)}\n" for p in files)
    return hashlib.sha256(lines.encode()).hexdigest()


def weight_differences(name: str, entry: dict[str, Any]) -> list[str]:
    """The published weights against the entry: checksum, classes, palette, architecture."""
    path = zoo_weights(entry)
    if path is None:
        return []
    if not path.is_file():
        return [f"{name}: weights file {path.name} is missing"]
    out = []
    digest = file_sha256(path)
    if digest != entry.get("sha256"):
        out.append(f"{name}: sha256 is {entry.get('sha256')} in zoo.yaml, the weights file's is {digest}")
    ckpt = read_checkpoint(path)
    out += [
        f"{name}: {key} in zoo.yaml differ from the weights file's"
        for key in ("classes", "palette")
        if ckpt["rspnet"].get(key) != entry.get(key)
    ]
    net, _ = build_zoo_net(entry)
    try:
        load_net_weights(net, net_state(ckpt), str(path))
    except ArtifactError as e:
        out.append(f"{name}: the weights do not fit the entry's genotype, macro and overrides ({e})")
    return out


def evaluate(entry: dict[str, Any], root: Path, out: Path) -> dict[str, Any]:
    """`stage=eval` of the entry's weights on `root` under the stored protocol (`scored_on.overrides`)."""
    import rspnet

    return rspnet.run(
        "eval",
        *entry["scored_on"]["overrides"],
        f"dataset.root={root}",
        f"ckpt={zoo_weights(entry)}",
        f"paths.output_dir={out}",
        "logger=none",
        "print_config=false",
        "stage.progress=false",
        "dataset.num_workers=0",
    )


def miou_differences(name: str, entry: dict[str, Any], notes: list[str]) -> list[str]:
    """The stored `miou` against an evaluation of the weights, when the stored data copy is present."""
    scored = entry.get("scored_on")
    if zoo_weights(entry) is None or not scored:
        return []
    root = REPO / scored["root"]
    if not root.is_dir():
        notes.append(f"{name}: miou not re-measured: no data at {scored['root']} (relative to the repo root)")
        return []
    found = data_fingerprint(root, scored["split"])
    if found != scored["fingerprint"]:
        return [f"{name}: the data at {scored['root']} is not the copy miou was measured on (fingerprint {found})"]
    with tempfile.TemporaryDirectory() as tmp:
        result = evaluate(entry, root, Path(tmp))
    if result["num_images"] != scored["images"] or abs(result["miou"] - entry["miou"]) > MIOU_TOL:
        return [
            f"{name}: miou is {entry['miou']} on {scored['images']} images in zoo.yaml, "
            f"measured {result['miou']:.4f} on {result['num_images']}"
        ]
    notes.append(f"{name}: miou {result['miou']:.4f} re-measured on {result['num_images']} {scored['split']} images")
    return []


def differences(evaluate_weights: bool = True, notes: list[str] | None = None) -> list[str]:
    """One line per statement of zoo.yaml that the recomputation does not reproduce (`notes`: what was skipped)."""
    notes = [] if notes is None else notes
    out = []
    for name, entry in zoo_entries().items():
        for key, value in measure(entry).items():
            if entry.get(key) != value:
                out.append(f"{name}: {key} is {entry.get(key)} in zoo.yaml, computed {value}")
        out += weight_differences(name, entry)
        if evaluate_weights:
            out += miou_differences(name, entry, notes)
    return out


def write() -> None:
    """Replace the `params:` / `gmacs:` values of each entry in place (comments and order kept)."""
    text = zoo_file().read_text()
    for name, entry in zoo_entries().items():
        block = re.search(rf"(- name: {re.escape(name)}\n(?:(?!- name:).*\n)*)", text)
        assert block is not None, name
        new = block.group(1)
        for key, value in measure(entry).items():
            new = re.sub(rf"(\n\s+{key}: ).*", rf"\g<1>{value}", new, count=1)
        text = text.replace(block.group(1), new)
    zoo_file().write_text(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--check", action="store_true", help="fail when zoo.yaml disagrees with the recomputation")
    group.add_argument("--write", action="store_true", help="rewrite the numbers in zoo.yaml")
    ap.add_argument("--no-eval", action="store_true", help="--check without evaluating the published weights")
    args = ap.parse_args(argv)
    if args.write:
        write()
        return 0
    notes: list[str] = []
    diffs = differences(not args.no_eval, notes)
    for line in diffs:
        print(f"zoo.yaml: {line}", file=sys.stderr)
    for line in notes:
        print(f"zoo.yaml: {line}")
    if not diffs:
        print(f"zoo.yaml: {len(zoo_entries())} entries agree with the recomputation")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
