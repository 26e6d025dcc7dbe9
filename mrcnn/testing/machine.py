"""What machine a benchmark ran on, for the figures it prints."""
from __future__ import annotations

import platform
import time

__all__ = ["cpu_name", "timed_runs"]


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``) with its family and model numbers, e.g.
    ``AMD EPYC (family 25, model 17)``: a virtual machine often shows a bare name."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "cpu family", "model") and key not in fields:
                    fields[key] = value.strip()
                if not line.strip() and fields:
                    break
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or "unknown CPU"
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return name


def timed_runs(fn, runs: int) -> list[float]:
    """Seconds each of ``runs`` calls of ``fn()`` took, in order (warm the caller's way
    first: the figures quoted are the median of these)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times
