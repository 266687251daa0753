"""tools/reports.py: what the doc generators share (no anvil, no timing asserts)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

from reports import replace_section

BEGIN, END = "<!-- BEGIN GENERATED BENCH-RUNTIME -->", "<!-- END GENERATED BENCH-RUNTIME -->"


def test_replace_section_touches_only_the_marked_text() -> None:
    text = f"head\n{BEGIN}\nold\nlines\n{END}\ntail {BEGIN}?\n"
    once = replace_section(text, "new table\n", BEGIN, END)
    assert once == f"head\n{BEGIN}\nnew table\n{END}\ntail {BEGIN}?\n"
    assert replace_section(once, "new table", BEGIN, END) == once  # idempotent
    with pytest.raises(ValueError):
        replace_section("no markers here", "x", BEGIN, END)


@pytest.mark.parametrize(
    "marker",
    [
        ("<!-- BEGIN GENERATED BENCH -->", "<!-- END GENERATED BENCH -->"),
        (BEGIN, END),
        ("<!-- BEGIN GENERATED RELIABILITY -->", "<!-- END GENERATED RELIABILITY -->"),
        ("<!-- BEGIN GENERATED BENCH-BEACON -->", "<!-- END GENERATED BENCH-BEACON -->"),
    ],
)
def test_rewriting_a_generated_section_with_its_own_text_changes_nothing(
    marker: tuple[str, str],
) -> None:
    # the generators' output as committed round-trips through the shared writer
    doc = (Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md").read_text()
    begin, end = marker
    body = doc[doc.index(begin) + len(begin) : doc.index(end)]
    assert replace_section(doc, body.strip("\n"), begin, end) == doc
