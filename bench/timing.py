"""Wall-clock timing shared by the speed benchmarks: calls that take turns, so that a slow spell of
a shared machine (clock, other load) hits all of them alike."""
from __future__ import annotations

import time
from typing import Callable

import torch


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def interleaved_ms(calls: dict[str, Callable[[], object]], device: torch.device, repeats: int,
                   warmup: int = 2) -> dict[str, list[float]]:
    """Wall time of each call in each of ``repeats`` rounds, in milliseconds, after ``warmup``
    rounds; within a round the calls run one after another."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for round_ in range(warmup + repeats):
        for name, fn in calls.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            if round_ >= warmup:
                times[name].append((time.perf_counter() - t0) * 1e3)
    return times
