"""What the tools that write generated sections of the docs share: putting a section
between its markers, and naming the machine a figure was measured on.

Used by bench.py, bench_runtime.py, reliability.py and gen_protocol_examples.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["anvil_version", "cpu_model", "replace_section", "write_section"]


def replace_section(text: str, body: str, begin: str, end: str) -> str:
    """``text`` with everything between the ``begin`` and ``end`` markers set to ``body``
    (on its own lines: one newline after ``begin``, one before ``end``)."""
    start = text.index(begin) + len(begin)
    stop = text.index(end, start)
    return text[:start] + "\n" + body.rstrip("\n") + "\n" + text[stop:]


def write_section(path: Path, body: str, begin: str, end: str) -> None:
    """Replace the marked section of the file at ``path`` with ``body``."""
    path.write_text(replace_section(path.read_text(encoding="utf-8"), body, begin, end))


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("unknown CPU" elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def anvil_version() -> str:
    """ "anvil 1.7.1" as the anvil lightpost finds reports it; a label when it cannot."""
    try:
        from lightpost_operator.anvil import find_anvil

        out = subprocess.run(
            [find_anvil(), "--version"], capture_output=True, text=True, timeout=20, check=False
        )
        return out.stdout.splitlines()[0].strip().replace("Version: ", "")
    except Exception:  # only a label in the doc
        return "anvil (version unknown)"
