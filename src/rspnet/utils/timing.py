"""Wall-clock timing of forward passes and the name of the device they ran on (profile, latency tables)."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from typing import Any

import torch


def time_forward(fn: Any, x: Any, warmup: int, repeats: int) -> list[float]:
    """Wall seconds of `repeats` calls of `fn(x)` after `warmup` untimed ones (CUDA synchronised)."""
    cuda = isinstance(x, torch.Tensor) and x.device.type == "cuda"
    return time_calls(lambda: fn(x), warmup, repeats, cuda)


def time_calls(call: Callable[[], Any], warmup: int, repeats: int, cuda: bool = False) -> list[float]:
    """Wall seconds of `repeats` calls of `call()` under inference mode, after `warmup` untimed ones."""
    with torch.inference_mode():
        for _ in range(warmup):
            call()
        times = []
        for _ in range(repeats):
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            call()
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    return times


def cpu_name() -> str:
    """The CPU model (from /proc/cpuinfo on Linux), else what `platform` knows."""
    cpu = platform.processor() or platform.machine()
    try:  # the model name is only in /proc/cpuinfo on Linux
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return cpu


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU model with the torch thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()}, {torch.get_num_threads()} torch threads"
