"""tools/bench_beacon.py's section generator and its arithmetic (no devnet, no timing asserts)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytest.importorskip("py_arkworks_bls12381", reason="the lightpost[beacon] extra")

from lightpost_beacon.anchor import devnet_config
from lightpost_beacon.containers import MAINNET

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "bench_beacon", ROOT / "tools" / "bench_beacon.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


SIZES = {
    "bootstrap": 50_000,
    "updates": 60_000,
    "finality_update": 5_000,
    "optimistic_update": 2_000,
}


def test_daily_bytes_at_mainnet_cadence(bench: ModuleType) -> None:
    d = bench.daily_bytes(SIZES, config=MAINNET, poll_s=1.0)
    # a slot every 12 s, an epoch of 32 slots, a period of 256 epochs
    assert d["optimistic_update"]["chain_answers"] == 7200
    assert d["finality_update"]["chain_answers"] == 225
    assert d["updates"]["chain_answers"] == pytest.approx(86_400 / (12 * 32 * 256))
    assert d["bootstrap"]["chain_bytes"] == 0  # once, then the state on disk
    assert d["optimistic_update"]["chain_bytes"] == 7200 * 2_000
    # lightpost syncs at most once a slot, finality once an epoch when finality moves
    assert d["finality_update"]["lightpost_answers"] == 225
    assert d["optimistic_update"]["lightpost_bytes"] == 7200 * 2_000
    two = bench.daily_bytes(SIZES, config=MAINNET, poll_s=2.0, endpoints=2)
    assert two["finality_update"]["lightpost_answers"] == 2 * 225
    assert two["optimistic_update"]["lightpost_answers"] == 2 * 7200
    assert two["updates"]["lightpost_answers"] == d["updates"]["lightpost_answers"]
    total = d["total"]["chain_bytes"]
    assert total == sum(d[r]["chain_bytes"] for r in SIZES)


def test_daily_bytes_follow_the_chain_config(bench: ModuleType) -> None:
    devnet = devnet_config(genesis_time=0)  # 1 s slots, 8-slot epochs, 8-epoch periods
    d = bench.daily_bytes(SIZES, config=devnet, poll_s=1.0)
    assert d["optimistic_update"]["chain_answers"] == 86_400
    assert d["finality_update"]["chain_answers"] == 86_400 / 8
    assert d["updates"]["chain_answers"] == 86_400 / 64


def test_head_asks_follow_the_client_rule(bench: ModuleType) -> None:
    asks = bench.head_asks_per_day(MAINNET, poll_s=1.0)
    assert asks == {"finality_update": 225, "optimistic_update": 7200}
    slow = bench.head_asks_per_day(MAINNET, poll_s=30.0)  # polls slower than slots
    assert slow["optimistic_update"] == 2880
    late = bench.head_asks_per_day(MAINNET, poll_s=1.0, finality_after_slots=2)
    assert late["finality_update"] == 3 * 225  # asked at slots 0, 1 and 2 of each epoch
    never = bench.head_asks_per_day(MAINNET, poll_s=1.0, finality_after_slots=32)
    assert never["finality_update"] == 7200  # no finality: asked every slot


def test_answer_sizes_are_the_real_mainnet_answers_compacted(bench: ModuleType) -> None:
    if not bench.DATA.is_dir():
        pytest.skip("../shared/vectors/beacon is not here")
    sizes = bench.answer_sizes()
    assert set(sizes) == set(bench.ROUTES)
    for route, s in sizes.items():
        assert 0 < s["wire"] < s["file"], route  # the files are pretty-printed
    assert sizes["bootstrap"]["wire"] > 512 * 98  # 512 keys of 98 hex characters


def _result(bench: ModuleType, nodes: bool) -> dict[str, Any]:
    sizes = {r: {"wire": n, "file": n + 100} for r, n in SIZES.items()}
    result: dict[str, Any] = {
        "date": "2026-11-29",
        "cpu_model": "a CPU",
        "poll_s": 1.0,
        "sizes": sizes,
        "daily": bench.daily_bytes(SIZES, config=MAINNET, poll_s=1.0),
        "cpu": {
            "signers": [510, 512],
            "committee_size": 512,
            "updates_ms": {"optimistic update, keys decompressed": 5.25},
            "handover_ms": [5.0, 13.0],
            "state_bytes": [26_673, 51_303],
        },
    }
    if nodes:
        node = {"messages": 30, "to_final_s": 20.0, "rss_mb": 60.0, "peak_mb": 61.0}
        result["nodes"] = {
            "beacon": dict(node, beacon_requests_per_s={"finality_update": 1.0}),
            "quorum": dict(node, rss_mb=40.0, beacon_requests_per_s={}),
        }
    return result


def test_render_gives_every_figure_side_by_side(bench: ModuleType) -> None:
    text = bench.render(_result(bench, nodes=True))
    assert "| optimistic update, keys decompressed | 5.2 ms |" in text
    assert "5.0-13.0 ms" in text and "26,673 bytes" in text and "51,303" in text
    assert "| `finality_update` | 5.0 KB (5.1 KB) | 225.00 | 1.1 MB | 225 | 1.1 MB |" in text
    assert "| beacon | 30 | 20.0 s | 60.0 MB | 61.0 MB | finality_update 1.00 |" in text
    assert "| quorum | 30 | 20.0 s | 40.0 MB | 61.0 MB | none |" in text
    assert "RECEIVE_INTERVAL_S` = 1 s" in text
    without = bench.render(_result(bench, nodes=False))
    assert "VmRSS" not in without and text.startswith(without.rstrip("\n"))


def test_the_section_is_written_between_its_markers_only(bench: ModuleType, tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# head\n{bench.BEGIN}\nold\n{bench.END}\ntail\n")
    text = bench.render(_result(bench, nodes=False))
    sys.path.insert(0, str(ROOT / "tools"))
    from reports import write_section

    write_section(doc, text, bench.BEGIN, bench.END)
    out = doc.read_text()
    assert out.startswith(f"# head\n{bench.BEGIN}\n") and out.endswith(f"{bench.END}\ntail\n")
    assert "old" not in out and "### Time per update verified" in out
    committed = (ROOT / "docs" / "benchmarks.md").read_text()
    assert bench.BEGIN in committed and bench.END in committed


def test_the_quorum_variant_of_a_beacon_config_has_no_light_client(
    bench: ModuleType, tmp_path: Path
) -> None:
    base = tmp_path / "device-1.toml"
    base.write_text(
        'name = "device-1"\nendpoints = ["http://127.0.0.1:8545"]\nquorum = 1\n'
        'trust = "beacon"\ndata_dir = "../data/device-1"\n\n[send]\nmax_delay_s = 1.0\n'
        '\n[beacon]\nendpoints = ["http://127.0.0.1:36429"]\ntrusted_root = "0x00"\n'
    )
    quorum = bench._variant(base, "quorum", "http://127.0.0.1:1").read_text()
    assert "trust" not in quorum and "[beacon]" not in quorum
    assert 'data_dir = "../data/device-1"' in quorum and "max_delay_s" in quorum
    beacon = bench._variant(base, "beacon", "http://127.0.0.1:1").read_text()
    assert 'trust = "beacon"' in beacon and 'data_dir = "../data/device-1"' in beacon
    assert 'endpoints = ["http://127.0.0.1:1"]\ntrusted_root' in beacon
    assert 'endpoints = ["http://127.0.0.1:8545"]' in beacon  # the RPC endpoints stay
