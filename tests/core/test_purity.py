"""The protocol core stays sans-I/O: every import under src/lightpost/core/ is allowed.

Allowed: stdlib modules that do no I/O, ``coincurve``, ``sha3``, ``lightpost.core.*``
and ``lightpost.errors``. Static check with ``ast`` (no module is imported to check it).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "src" / "lightpost" / "core"
BEACON = Path(__file__).resolve().parents[2] / "beacon" / "src" / "lightpost_beacon"
BEACON_PURE = ("ssz.py", "containers.py", "lightclient.py", "history.py")
"""lightpost-beacon's sans-I/O modules: held to the core's rule (sources.py and bls.py do I/O)."""
AGENT_COMMAND = (
    Path(__file__).resolve().parents[2] / "agent" / "src" / "lightpost_agent" / "command.py"
)
"""lightpost-agent's pure rules (the command codec, the policy, the decisions)."""
GATEWAY = Path(__file__).resolve().parents[2] / "gateway/src/lightpost_gateway"
GATEWAY_PURE = ("record.py", "batch.py", "anchor.py", "admit.py", "relay.py")
"""lightpost-gateway's pure modules: the device record format and rules, Merkle batches, the
anchoring contract's rules."""
OPERATOR = Path(__file__).resolve().parents[2] / "operator/src/lightpost_operator"
OPERATOR_PURE = ("keywrite.py",)
"""lightpost-operator's pure modules (writing a keystore: the randomness is an argument)."""

FORBIDDEN_STDLIB = frozenset(
    {
        # network, files, processes, threads, clocks, randomness, logging, dynamic import
        "asyncio",
        "concurrent",
        "ctypes",
        "fileinput",
        "ftplib",
        "glob",
        "http",
        "importlib",
        "io",
        "logging",
        "mmap",
        "multiprocessing",
        "os",
        "pathlib",
        "random",
        "secrets",
        "select",
        "selectors",
        "shutil",
        "signal",
        "smtplib",
        "socket",
        "socketserver",
        "sqlite3",
        "ssl",
        "subprocess",
        "sys",
        "tempfile",
        "threading",
        "time",
        "urllib",
    }
)
"""Stdlib modules the core must not import (I/O, clocks, randomness, environment)."""

THIRD_PARTY_ALLOWED = frozenset({"coincurve", "sha3"})
"""The device core's dependency (coincurve) and the optional compiled keccak (sha3, from
safe-pysha3: the `fast` extra; core/hashing.py falls back to core/keccak.py)."""

FORBIDDEN_CALLS = frozenset({"open", "input", "print", "breakpoint", "exec", "eval", "__import__"})
"""Builtins that do I/O or import dynamically."""


def _module_name(path: Path) -> str:
    if path.parent == BEACON:
        return f"lightpost_beacon.{path.stem}"
    if path == AGENT_COMMAND:
        return "lightpost_agent.command"
    if path.parent == GATEWAY:
        return f"lightpost_gateway.{path.stem}"
    if path.parent == OPERATOR:
        return f"lightpost_operator.{path.stem}"
    parts = path.relative_to(CORE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(("lightpost", *parts))


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """Absolute module name of a (possibly relative) ``from ... import``."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _lightpost_allowed(name: str) -> bool:
    return (
        name == "lightpost.errors" or name == "lightpost.core" or name.startswith("lightpost.core.")
    ) or name in {
        *(f"lightpost_beacon.{m[:-3]}" for m in BEACON_PURE),
        *(f"lightpost_gateway.{m[:-3]}" for m in GATEWAY_PURE),
        *(f"lightpost_operator.{m[:-3]}" for m in OPERATOR_PURE),
    }


def violations(
    source: str, module: str = "lightpost.core.example", is_package: bool = False
) -> list[str]:
    """Every disallowed import or call in ``source``, as readable strings."""
    found: list[str] = []

    def check(name: str, lineno: int) -> None:
        top = name.split(".")[0]
        if top in ("lightpost", "lightpost_beacon", "lightpost_gateway", "lightpost_operator"):
            if not _lightpost_allowed(name):
                found.append(f"line {lineno}: imports {name} (core may import only core/errors)")
        elif top == "__future__" or top in THIRD_PARTY_ALLOWED:
            return
        elif top in FORBIDDEN_STDLIB:
            found.append(f"line {lineno}: imports {name} (I/O, clock or randomness)")
        elif top not in sys.stdlib_module_names:
            found.append(f"line {lineno}: imports {name} (not stdlib/coincurve/sha3)")

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                check(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node, module, is_package)
            if base == "lightpost":
                for alias in node.names:  # from lightpost import errors
                    check(f"lightpost.{alias.name}", node.lineno)
            else:
                check(base, node.lineno)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in FORBIDDEN_CALLS
        ):
            found.append(f"line {node.lineno}: calls {node.func.id}()")
    return found


def _core_files() -> Iterator[Path]:
    yield from sorted(CORE.rglob("*.py"))
    yield from (BEACON / name for name in BEACON_PURE)
    yield AGENT_COMMAND
    yield from (GATEWAY / name for name in GATEWAY_PURE)
    yield from (OPERATOR / name for name in OPERATOR_PURE)


def test_core_directory_is_found() -> None:
    names = {p.name for p in _core_files()}
    assert {
        "__init__.py",
        "rlp.py",
        "keys.py",
        "keystore.py",
        "aes.py",
        *BEACON_PURE,
        "command.py",
        *OPERATOR_PURE,
    } <= names


@pytest.mark.parametrize("path", list(_core_files()), ids=lambda p: p.name)
def test_core_module_imports_are_allowed(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    found = violations(source, _module_name(path), path.name == "__init__.py")
    assert not found, f"{path.name}: " + "; ".join(found)


# --- the checker itself catches violations -----------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "import socket",
        "import os.path",
        "from os import environ",
        "import time",
        "from time import monotonic",
        "import random",
        "import secrets",
        "import threading",
        "import asyncio",
        "from urllib.request import urlopen",
        "import http.client",
        "import sqlite3",
        "import logging",
        "import io",
        "from pathlib import Path",
        "import subprocess",
        "import tempfile",
        "import shutil",
        "import signal",
        "import select",
        "import requests",
        "import numpy as np",
        "from eth_account import Account",
        "from lightpost.adapters.rpc import HttpEndpoint",
        "from lightpost import adapters",
        "from ..adapters import rpc",
        "def f():\n    import socket\n",
        "data = open('key.json').read()",
        "print('debug')",
        "mod = __import__('socket')",
    ],
)
def test_checker_flags_violations(source: str) -> None:
    assert violations(source), f"not flagged: {source!r}"


@pytest.mark.parametrize(
    "source",
    [
        "from __future__ import annotations",
        "import hashlib, hmac, json, struct",
        "from collections.abc import Callable",
        "from dataclasses import dataclass",
        "import coincurve",
        "import sha3",
        "from lightpost.core import rlp",
        "from lightpost.core.hashing import keccak256",
        "from lightpost.errors import KeystoreError",
        "from lightpost import errors",
        "from . import rlp",
        "from .hashing import keccak256",
        "from ..errors import DecodingError",
    ],
)
def test_checker_allows_pure_imports(source: str) -> None:
    assert violations(source) == []
