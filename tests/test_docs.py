"""The docs back their claims with named tests: every `test_...` they cite must exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ("README.md", "docs/protocol.md")
CITED = re.compile(r"`(test_\w+)`")


def _defined_tests() -> set[str]:
    pattern = re.compile(r"^\s*def (test_\w+)\(", re.MULTILINE)
    return {
        name
        for path in (ROOT / "tests").rglob("*.py")
        for name in pattern.findall(path.read_text(encoding="utf-8"))
    }


def test_every_test_the_docs_cite_exists() -> None:
    defined = _defined_tests()
    cited = {
        (doc, name)
        for doc in DOCS
        for name in CITED.findall((ROOT / doc).read_text(encoding="utf-8"))
    }
    assert cited, "the docs cite no test at all"
    missing = sorted(f"{doc}: {name}" for doc, name in cited if name not in defined)
    assert not missing, missing
