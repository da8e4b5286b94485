"""Cost measurement (`causal_engine.profiling`, `causal_engine.costs`): the growth fit, the measurement points at
tiny sizes, the point runner and the page."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from causal_engine import costs
from causal_engine.profiling import growth_exponent, growth_sentence

SIZES = [10, 20, 50, 100]


def test_growth_exponent_recovers_a_known_power_law() -> None:
    assert growth_exponent(SIZES, [3e-4 * d**1.7 for d in SIZES]) == pytest.approx(1.7, abs=1e-12)
    assert growth_exponent(SIZES, [5.0 / d for d in SIZES]) == pytest.approx(-1.0, abs=1e-12)


def test_growth_exponent_is_the_least_squares_slope_of_the_logs() -> None:
    values = [1.0, 4.5, 20.0, 130.0]
    x, y = [math.log(s) for s in SIZES], [math.log(v) for v in values]
    mx, my = sum(x) / 4, sum(y) / 4
    slope = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / sum((a - mx) ** 2 for a in x)
    assert growth_exponent(SIZES, values) == pytest.approx(slope, rel=1e-12)


@pytest.mark.parametrize(
    ("sizes", "values", "message"),
    [
        ([10], [1.0], "two distinct sizes"),
        ([10, 10], [1.0, 2.0], "two distinct sizes"),
        ([10, 20], [0.0, 1.0], "positive"),
    ],
)
def test_growth_exponent_rejects_unfittable_series(sizes: list[int], values: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        growth_exponent(sizes, values)


def test_growth_sentence_states_exponent_range_and_the_top_of_the_range() -> None:
    pure = growth_sentence("Time", "d", SIZES, [1e-3 * d**2 for d in SIZES], "s")
    assert pure == "Time grows ~d^2.0 between d=10 and 100 (0.1 → 10 s)"
    # A fixed cost flattens the small sizes: the overall fit is shallower than the two largest sizes' slope.
    overhead = growth_sentence("Time", "d", SIZES, [1.0 + 1e-3 * d**2 for d in SIZES], "s")
    top = math.log(11.0 / 3.5) / math.log(2)
    assert overhead.endswith(f", ~d^{top:.1f} between the two largest")


def test_points_measure_seconds_and_peak_memory_at_tiny_sizes() -> None:
    points = [
        costs.scm_point(5, batch=2, min_seconds=0.0),
        costs.pfn_point(6, samples=10, checkpoint=None, min_seconds=0.0),
        costs.baseline_point("PC", 5, samples=30, min_seconds=0.0),
        costs.baseline_point("GES", 5, samples=30, min_seconds=0.0),
        costs.dml_point(60, jepa_epochs=1, nuisance_epochs=2),
    ]
    for point in points:
        assert 0 < point["seconds"] < 60
        assert 0 <= point["peak_mb"] < 2_000  # peak RSS cannot fall below the RSS at its reset


def test_runner_returns_a_points_result_and_kills_an_overdue_point() -> None:
    runner = costs.point_runner(threads=1)
    result = runner("pfn", d=6, samples=10, checkpoint=None, min_seconds=0.0)
    assert result is not None and result["seconds"] > 0
    assert runner("baseline", timeout=0.01, method="GES", d=30, samples=50, min_seconds=0.0) is None
    with pytest.raises(RuntimeError, match="exceeds the net's max_nodes"):
        runner("pfn", d=101, samples=10, checkpoint=None, min_seconds=0.0)


def _rows(method: str, sizes: list[int], seconds, memory, status: dict[int, str] | None = None) -> list[dict]:
    status = status or {}
    return [
        {"method": method, "size": s, "status": status.get(s, "ok"), "seconds": seconds(s), "peak_mb": memory(s)}
        for s in sizes
    ]


def test_page_has_a_table_fit_and_plot_per_series(tmp_path: Path) -> None:
    ds = [10, 20, 50, 100]
    results = {
        "scm": [{**r, "graphs_per_s": 1 / r["seconds"]} for r in _rows("SCM prior", ds, lambda d: 1e-5 * d**2, float)],
        "discovery_d": _rows("PFN", ds, lambda d: 1e-4 * d**2, lambda d: 0.01 * d**2)
        + _rows("PC", ds, lambda d: 1e-3 * d**3, lambda d: 0.5, {50: "timeout", 100: "not run"}),
        "discovery_samples": _rows("PFN", [25, 50], lambda n: 1e-3 * n, lambda n: 2.0),
        "dml": _rows("JEPA-DML cross-fit", [250, 500, 1000], lambda n: 0.05 * n, lambda n: 0.2 * n),
    }
    meta = {
        **costs.SIZES["quick"],
        "mode": "quick",
        "command": "python scripts/costs.py --quick",
        "started": "now",
        "minutes": 0.5,
        "cpus": 2,
        "load_start": 9.0,
        "load_end": 8.0,
        "torch": "2",
        "threads": 1,
        "blas_threads": "1",
        "pfn": "fresh ModelA",
        "baseline_limit": 60.0,
        "preset_dml": "4 JEPA epochs and nuisance fits to convergence (patience 20)",
    }
    page = costs.write_page(tmp_path / "benchmarks.md", results, meta)

    assert (tmp_path / "benchmarks.md").read_text() == page
    saved = json.loads((tmp_path / "benchmarks" / "results.json").read_text())
    assert saved == json.loads(json.dumps({"meta": meta, "results": results}))  # --render-only reads this back

    assert "`python scripts/costs.py --quick`" in page and "- Machine: 2 CPUs" in page
    assert "load average" not in page and "started" not in page  # no machine load or date on the page
    assert "the preset's 4 JEPA epochs and nuisance fits to convergence (patience 20) take longer" in page
    for section, (title, *_rest) in costs.SECTIONS.items():
        assert f"## {title}" in page and f"](benchmarks/{section}.png)" in page
        assert (tmp_path / "benchmarks" / f"{section}.png").stat().st_size > 0
    table = page.split("## Discovery: PFN inference vs PC and GES, vs d")[1].split("\n\n")[2].splitlines()
    assert table[0] == "| d | PFN s/graph | PFN peak MB | PC s/graph | PC peak MB |"
    assert [line.count("|") for line in table] == [6] * 6  # header, rule, four sizes
    assert table[4] == "| 50 | 0.25 | 25.0 | > 60 s (stopped) | — |"
    assert table[5] == "| 100 | 1 | 100.0 | not run | not run |"
    assert (
        "- PFN time per graph grows ~d^2.0 between d=10 and 100 (0.01 → 1 s); peak memory ~d^2.0 (1 → 100 MB)." in page
    )
    assert "- PC time per graph grows ~d^3.0 between d=10 and 20" in page
    assert "stopped at d=50 (one call took over 60 s)" in page
    assert "- Wall time grows ~N^1.0 between N=250 and 1000 (12.5 → 50 s); peak memory ~N^1.0 (50 → 200 MB)." in page
    assert "| PFN, vs d | d = 10, 20, 50, 100 | 2.00 | 2.00 | 2.00 |" in page
    assert "peak memory is under 1 MB" not in page.split("## SCM")[1].split("## Discovery")[0]
