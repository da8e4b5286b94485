"""Measuring costs: peak memory and best-of-repeats time of a call (Linux: read from /proc), each measurement in
its own process (`PointRunner`), and the power-law growth fitted to a series of them.

Writing 5 to `/proc/self/clear_refs` resets the process's peak resident set (VmHWM) to its current one, so the
peak after the measured calls minus the resident set before them is what those calls added on top of the
imported libraries and their inputs.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import torch


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


def growth_exponent(sizes: list[float], values: list[float]) -> float:
    """Least-squares slope of log(value) against log(size): the k of value ≈ c · size^k."""
    x, y = np.asarray(sizes, dtype=float), np.asarray(values, dtype=float)
    if np.unique(x).size < 2:
        raise ValueError(f"a growth exponent needs at least two distinct sizes, got {list(sizes)}")
    if not (np.all(x > 0) and np.all(y > 0) and np.all(np.isfinite(y))):
        raise ValueError(f"a growth exponent needs positive sizes and values, got {list(sizes)}, {list(values)}")
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def growth_sentence(what: str, size: str, sizes: list[float], values: list[float], unit: str) -> str:
    """'<what> grows ~size^k between size=a and b (v_a → v_b unit)', plus the exponent over the last two sizes
    when it differs from the overall one by more than 0.3 (fixed costs flatten the small sizes)."""
    k = growth_exponent(sizes, values)
    text = (
        f"{what} grows ~{size}^{k:.1f} between {size}={sizes[0]:g} and {sizes[-1]:g} "
        f"({format_number(values[0])} → {format_number(values[-1])} {unit})"
    )
    if len(sizes) > 2:
        top = growth_exponent(sizes[-2:], values[-2:])
        if abs(top - k) > 0.3:
            text += f", ~{size}^{top:.1f} between the two largest"
    return text


def format_number(value: float) -> str:
    """Thousands separated from 100 up, else three significant digits."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _child(conn: Connection, threads: int, point: Callable[..., dict[str, float]], kwargs: dict[str, Any]) -> None:
    """Entry point of a point process: run the point quietly, send its result (or the traceback) back."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    torch.set_num_threads(threads)
    try:
        conn.send(point(**kwargs))
    except Exception:  # reported by the parent, with the point that failed
        conn.send({"error": traceback.format_exc()})
    conn.close()


class PointRunner:
    """Runs each measurement ("point") in a fresh process forked from a server that has the heavy imports done once.

    `points` maps a kind to a module-level function returning a dict of measurements (it is pickled by name);
    `preload` names the modules the fork server imports before any point runs.
    """

    def __init__(
        self, points: Mapping[str, Callable[..., dict[str, float]]], threads: int, preload: Sequence[str] = ()
    ) -> None:
        self.points, self.threads = dict(points), threads
        self.ctx = multiprocessing.get_context("forkserver")
        self.ctx.set_forkserver_preload(list(preload))

    def __call__(self, kind: str, timeout: float | None = None, **kwargs: Any) -> dict[str, float] | None:
        """The point's result, or None when it ran longer than `timeout` seconds (it is killed)."""
        receive, send = self.ctx.Pipe(duplex=False)
        process = self.ctx.Process(target=_child, args=(send, self.threads, self.points[kind], kwargs))
        process.start()
        send.close()
        try:
            if not receive.poll(timeout):
                process.kill()
                return None
            result = receive.recv()
        except EOFError:
            result = {"error": f"the point process died (exit code {process.exitcode})"}
        finally:
            process.join()
            receive.close()
        if "error" in result:
            raise RuntimeError(f"{kind} point {kwargs} failed:\n{result['error']}")
        return result
