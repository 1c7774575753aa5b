"""The model zoo file `experiments/zoo.yaml`: recompute its params and GMACs, fail when they disagree.

    python -m experiments.zoo --check    # exit 1 listing every entry whose numbers differ
    python -m experiments.zoo --write    # rewrite the numbers in zoo.yaml (the rest is kept)

Params and GMACs come from the network built on the `meta` device (no memory, seconds even for
the paper preset) at each entry's `input_size`; GMACs = FLOPs / 2 of `torch.utils.flop_counter`
(conv/matmul only), batch 1. `rspnet.load_model("zoo:<name>")` builds the same network.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

import torch

from rspnet.api import build_zoo_net, zoo_entries, zoo_file
from rspnet.stages.summary import count_gflops


def measure(entry: dict[str, Any]) -> dict[str, float]:
    """{"params", "gmacs"} of a zoo entry's network at its input size."""
    with torch.device("meta"):
        net, _ = build_zoo_net(entry)
    size = tuple(int(v) for v in entry["input_size"])
    return {"params": sum(p.numel() for p in net.parameters()), "gmacs": round(count_gflops(net, size) / 2, 2)}


def differences() -> list[str]:
    """One line per number of zoo.yaml that the recomputation does not reproduce."""
    out = []
    for name, entry in zoo_entries().items():
        for key, value in measure(entry).items():
            if entry.get(key) != value:
                out.append(f"{name}: {key} is {entry.get(key)} in zoo.yaml, computed {value}")
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
    args = ap.parse_args(argv)
    if args.write:
        write()
        return 0
    diffs = differences()
    for line in diffs:
        print(f"zoo.yaml: {line}", file=sys.stderr)
    if not diffs:
        print(f"zoo.yaml: {len(zoo_entries())} entries agree with the recomputation")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
