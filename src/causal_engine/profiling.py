"""Peak memory and best-of-repeats time of a call, for the cost benchmarks (Linux: read from /proc).

Writing 5 to `/proc/self/clear_refs` resets the process's peak resident set (VmHWM) to its current one, so the
peak after the measured calls minus the resident set before them is what those calls added on top of the
imported libraries and their inputs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path


def rss_mb(field: str) -> float:
    """`VmRSS` (current) or `VmHWM` (peak since the last reset) of this process, in MB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not found in /proc/self/status")


def reset_peak_rss() -> float:
    """Reset this process's peak RSS to its current RSS (Linux) and return that RSS in MB."""
    Path("/proc/self/clear_refs").write_text("5")
    return rss_mb("VmRSS")


def measure(call: Callable[[], object], min_seconds: float, max_repeats: int = 200) -> dict[str, float]:
    """Best-of-repeats seconds of `call()` and the peak RSS it adds, in MB.

    Repeats until `min_seconds` of calls (at most `max_repeats`); a call longer than that runs once.
    """
    baseline = reset_peak_rss()
    times: list[float] = []
    while not times or (sum(times) < min_seconds and len(times) < max_repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return {"seconds": min(times), "peak_mb": rss_mb("VmHWM") - baseline, "repeats": len(times)}
