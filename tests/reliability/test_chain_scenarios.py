"""Short versions of `make reliability`'s chain scenarios that tests/integration does
not already have (see the table in docs/benchmarks.md for where the others live):
reorgs of depth 2 and 3, flapping endpoints, insufficient funds on a real chain."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import reliability_chain as chain

import reliability

pytestmark = pytest.mark.integration


def test_tally_counts_lost_duplicated_and_unexpected() -> None:
    t = chain.tally(Counter({0: 1, 2: 2, 7: 1}), 3)
    assert t == {"messages": 3, "on_chain": 2, "lost": 1, "duplicated": 1, "unexpected": 1}


def test_reorgs_of_depth_1_to_3() -> None:
    outcome = chain.reorgs(3, progress=lambda _line: None)
    assert outcome.ok, outcome.details
    assert outcome.details["messages"] == 1 + 2 + 3
    assert outcome.details["on_chain"] == 6 and outcome.details["duplicated"] == 0


def test_flapping_endpoints() -> None:
    outcome = chain.endpoints(1, 4, modes=("flapping", "flapping-all"), progress=lambda _line: None)
    assert outcome.ok, outcome.details
    for mode in ("flapping", "flapping-all"):
        row = outcome.details[mode]
        assert row["on_chain"] == 4 and row["duplicated"] == 0
        assert row["refused"] + row["answers_lost"] > 0, "the endpoint never flapped"


def test_insufficient_funds_on_anvil() -> None:
    outcome = chain.funds(1, 3, progress=lambda _line: None)
    assert outcome.ok, outcome.details
    assert outcome.details["held"] == 3 and outcome.details["sent_unfunded"] == 0
    assert outcome.details["on_chain"] == 3


def test_write_docs_replaces_only_the_generated_section(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"before\n{reliability.BEGIN}\nold\n{reliability.END}\nafter\n")
    monkeypatch.setattr(reliability, "DOC", doc)
    monkeypatch.setattr(reliability, "machine", lambda: "test machine")
    row = chain.Outcome("Scenario X", "2 runs", "things", "0 lost", True, 1.0)
    reliability.write_docs(reliability.render([("funds", row)], mode="test", total_s=60))
    text = doc.read_text()
    assert text.startswith("before\n") and text.endswith(f"{reliability.END}\nafter\n")
    assert "old" not in text and "| Scenario X | 2 runs | things | 0 lost |" in text
    assert "test machine" in text and "1.0 min" in text
