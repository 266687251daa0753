"""Shared fixtures: the conformance vectors and a real anvil on a free loopback port."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lightpost_operator.anvil import AnvilProcess, free_port
from lightpost_operator.ganache import GanacheProcess

PROJECT_ROOT = Path(__file__).resolve().parents[1]
VECTORS = PROJECT_ROOT.parent / "shared" / "vectors"

ANVIL_DEV_KEYS = (
    # anvil's well-known default dev accounts (public test mnemonic "test test ... junk")
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
)


def vector_path(*parts: str) -> Path:
    """Path of a file under ../shared/vectors; missing is a failure under CI, else a skip."""
    path = VECTORS.joinpath(*parts)
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"conformance vectors missing under CI: {path}")
        pytest.skip(f"conformance vectors not present: {path}")
    return path


def _running_anvil() -> Iterator[AnvilProcess]:
    proc = AnvilProcess(port=free_port()).start()
    try:
        yield proc
    finally:
        proc.stop()  # always, even when the test failed


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``lightpost ARGS`` as a subprocess, as a user runs it (``env`` adds variables, ``stdin``
    is its input)."""
    return subprocess.run(
        [sys.executable, "-m", "lightpost.cli.main", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=PROJECT_ROOT,
        env={**os.environ, **(env or {})},
        check=False,
    )


@pytest.fixture(scope="session")
def anvil() -> Iterator[AnvilProcess]:
    """One anvil for the whole session (automine, finalized = latest - 4)."""
    yield from _running_anvil()


@pytest.fixture
def fresh_anvil() -> Iterator[AnvilProcess]:
    """A private anvil for tests that change chain-wide state (reorgs, base fee)."""
    yield from _running_anvil()


def _running_ganache() -> Iterator[GanacheProcess]:
    # anvil's dev keys funded: the same keys and helpers work on both nodes
    proc = GanacheProcess(port=free_port(), accounts=ANVIL_DEV_KEYS).start()
    try:
        yield proc
    finally:
        proc.stop()  # always, even when the test failed


@pytest.fixture(scope="session")
def ganache() -> Iterator[GanacheProcess]:
    """One Ganache 7.9.2 for the whole session (a second, independent node; automine, finalized =
    latest; no eth_getBlockReceipts; chain id 1337)."""
    yield from _running_ganache()


@pytest.fixture
def fresh_ganache() -> Iterator[GanacheProcess]:
    """A private Ganache for tests that change chain-wide state."""
    yield from _running_ganache()


NODES = ("anvil", "ganache")
"""The independent local nodes every full flow runs on."""


@pytest.fixture(scope="session", params=NODES)
def node(request: pytest.FixtureRequest) -> AnvilProcess:
    """Each session node in turn (anvil, then Ganache): parametrizes a test over both."""
    proc: AnvilProcess = request.getfixturevalue(request.param)
    return proc


@pytest.fixture(params=NODES)
def fresh_node(request: pytest.FixtureRequest) -> AnvilProcess:
    """A private anvil, then a private Ganache."""
    proc: AnvilProcess = request.getfixturevalue(f"fresh_{request.param}")
    return proc
