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
