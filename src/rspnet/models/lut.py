"""Per-device latency lookup tables: the median wall time of each block (models/blocks.py), in ms.

`stage=profile stage.mode=lut` measures every block a model preset's derived nets can use and
merges them into one JSON file (`search.latency_lut`), under the key of the device they ran on:
CPU model (or GPU name), torch version and torch threads. A derived net's predicted latency is
the sum of its blocks' entries; `search.target_latency_ms` and `stage=sample_arch` read it.

    {"format": "rspnet.lut/1",
     "devices": {"<cpu> | torch <version> | <n> threads": {"entries": {"op:conv_3x3:c5:60x80": 0.61, ...},
                                                          "measured": {...}}}}
"""

from __future__ import annotations

import functools
import json
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from rspnet.errors import ArtifactError, ConfigError
from rspnet.models.blocks import Block
from rspnet.utils.io import atomic_write_json
from rspnet.utils.timing import cpu_name, time_calls

LUT_FORMAT = "rspnet.lut/1"
LUT_COMMAND = "rspnet stage=profile stage.mode=lut"  # what builds a table (with the run's model/dataset options)


def device_key(threads: int | None = None) -> str:
    """The table key of this machine: CPU model, torch version, torch threads (default: this process's)."""
    threads = torch.get_num_threads() if threads is None else int(threads)
    return f"{cpu_name()} | torch {torch.__version__} | {threads} threads"


def measure(blocks: Iterable[Block], warmup: int, repeats: int, rounds: int = 3) -> dict[str, float]:
    """Median wall ms of batch-1 forwards of each block, by block key.

    Each block runs `warmup` untimed passes, then `rounds` rounds of `repeats` timed ones, the
    rounds interleaved across blocks so that a burst of load from other processes spreads over
    all blocks instead of inflating a few.
    """
    calls = {}
    for block in blocks:
        if block.key not in calls:
            torch.manual_seed(0)
            calls[block.key] = functools.partial(block.build().eval(), *block.example())
    times: dict[str, list[float]] = {key: [] for key in calls}
    for call in calls.values():
        time_calls(call, warmup, 0)
    for _ in range(rounds):
        for key, call in calls.items():
            times[key] += time_calls(call, 0, repeats)
    return {key: round(1000 * statistics.median(t), 5) for key, t in times.items()}


def _read(path: Path) -> dict[str, Any]:
    """The table file as a dict (one ArtifactError naming the file if it is not a latency table)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{path}: not a readable latency table ({e})") from e
    if not isinstance(data, dict) or data.get("format") != LUT_FORMAT or not isinstance(data.get("devices"), dict):
        raise ArtifactError(f'{path}: not a latency table (expected "format": "{LUT_FORMAT}" and "devices")')
    return data


def save(path: Path, key: str, entries: dict[str, float], measured: dict[str, Any]) -> Path:
    """Merge `entries` into the table for device `key` in `path` (other devices and blocks are kept)."""
    data = _read(path) if path.is_file() else {"format": LUT_FORMAT, "devices": {}}
    device = data["devices"].setdefault(key, {"entries": {}, "measured": {}})
    device["entries"].update(entries)
    device["measured"] = measured
    return atomic_write_json(path, data)


@dataclass
class LatencyTable:
    """The entries of one device: `price(block)` is its median ms (what the cost model sums)."""

    path: Path
    key: str
    entries: dict[str, float]

    @classmethod
    def load(cls, path: Path, key: str) -> LatencyTable:
        """The table of device `key` in `path`; one ConfigError saying how to build it when absent."""
        if not path.is_file():
            raise ConfigError(
                f"search.target_latency_ms needs a latency table: {path} does not exist; build it with "
                f"`{LUT_COMMAND}` and the same model/dataset/rsp/head options (or set search.latency_lut=FILE)"
            )
        devices = _read(path)["devices"]
        if key not in devices:
            have = "; ".join(sorted(devices)) or "none"
            raise ConfigError(
                f"{path} has no latency table for this device ({key}; it has: {have}); build it here with "
                f"`{LUT_COMMAND}` (search.latency_threads=N picks another thread count)"
            )
        return cls(path, key, {str(k): float(v) for k, v in devices[key]["entries"].items()})

    def price(self, block: Block) -> float:
        """Median ms of `block` on this device (ConfigError naming the command if it was never measured)."""
        if block.key not in self.entries:
            raise ConfigError(
                f"{self.path} ({self.key}) has no entry {block.key}: it was measured for another model preset, "
                f"size or head; add this one with `{LUT_COMMAND}` and the same model/dataset/rsp/head options"
            )
        return self.entries[block.key]


def table_for(cfg: DictConfig) -> LatencyTable:
    """The latency table `search.latency_lut` holds for this device at `search.latency_threads` (null = current)."""
    s = cfg.search
    return LatencyTable.load(Path(str(s.latency_lut)), device_key(s.get("latency_threads")))
