"""The package's declared public API resolves, and importing it stays cheap and inert."""

from __future__ import annotations

import subprocess
import sys

import lightpost


def test_every_public_name_resolves() -> None:
    for name in lightpost.__all__:
        assert getattr(lightpost, name) is not None, name


def test_import_opens_no_runtime_modules() -> None:
    code = (
        "import sys, lightpost\n"
        "bad = sorted(m for m in sys.modules if m.startswith('lightpost.node') "
        "or m in ('sqlite3', 'socket', 'http.client', 'urllib.request'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == ""
