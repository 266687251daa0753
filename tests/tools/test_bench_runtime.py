"""The pure helpers of tools/bench_runtime.py (no anvil, no timing asserts)."""

from __future__ import annotations

import importlib.util
import json
import statistics
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "bench_runtime", ROOT / "tools" / "bench_runtime.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def test_summarize_uses_inclusive_percentiles(bench: ModuleType) -> None:
    values = [float(v) for v in range(1, 101)]
    s = bench.summarize(list(reversed(values)))  # order does not matter
    assert s == {"count": 100, "p50": 50.5, "p95": pytest.approx(95.05), "max": 100.0}
    assert s["p50"] == statistics.median(values)


def test_summarize_small_inputs(bench: ModuleType) -> None:
    assert bench.summarize([]) == {"count": 0, "p50": None, "p95": None, "max": None}
    assert bench.summarize([1.25]) == {"count": 1, "p50": 1.25, "p95": 1.25, "max": 1.25}
    two = bench.summarize([1.0, 3.0])
    assert two["p50"] == 2.0 and two["p95"] == pytest.approx(2.9) and two["max"] == 3.0


def test_the_doc_has_exactly_one_generated_section(bench: ModuleType) -> None:
    doc = (ROOT / "docs" / "benchmarks.md").read_text()
    assert doc.count(bench.BEGIN) == 1 and doc.count(bench.END) == 1
    assert doc.index(bench.BEGIN) < doc.index(bench.END)


def test_verdict_names_the_measured_number(bench: ModuleType) -> None:
    assert bench.verdict(True, "p50 1.01 s") == "met (p50 1.01 s)"
    assert bench.verdict(False, "p50 1.51 s") == "**missed** (p50 1.51 s)"


def test_readings_are_small_distinct_json(bench: ModuleType) -> None:
    payloads = {bench.reading(d, n) for d in range(3) for n in range(50)}
    assert len(payloads) == 150
    for p in payloads:
        assert len(p) < 80 and isinstance(json.loads(p), dict)


def _poll(s: float, blocks: int, lag: int) -> dict[str, float]:
    return {"s": s, "blocks": blocks, "lag": lag, "proofs": 3 if blocks else 0, "bytes": 7e6,
            "verify_s": 0.1}  # fmt: skip


def test_follow_summary_keeps_up_within_one_poll(bench: ModuleType) -> None:
    phase = {"polls": [_poll(0.8, 1, 0), _poll(0.01, 0, 1), _poll(3.1, 2, 3), _poll(0.7, 1, 2)]}
    s = bench.follow_summary(phase, 2.0)
    assert (s["polls"], s["idle"], s["max_lag"], s["end_lag"]) == (3, 1, 3, 2)
    assert s["time"]["max"] == 3.1 and s["proofs_per_poll"] == 3
    assert s["keeps_up"]  # 2 <= 1 + ceil(3.1 / 2)


def test_follow_summary_falling_behind(bench: ModuleType) -> None:
    phase = {"polls": [_poll(1.5, 1, 1), _poll(1.5, 1, 4), _poll(1.5, 1, 9)]}
    assert not bench.follow_summary(phase, 2.0)["keeps_up"]  # 9 > 1 + 1
    assert not bench.follow_summary({"polls": []}, 2.0)["keeps_up"]


def test_the_doc_has_one_follow_section(bench: ModuleType) -> None:
    doc = (ROOT / "docs" / "benchmarks.md").read_text()
    assert doc.count(bench.FOLLOW_BEGIN) == 1 and doc.count(bench.FOLLOW_END) == 1
    assert doc.index(bench.FOLLOW_BEGIN) < doc.index(bench.FOLLOW_END)
