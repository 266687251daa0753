"""Finding anvil, and the one-line errors a new user meets around the devnet."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lightpost.adapters import anvil
from lightpost.errors import ChainProcessError


def test_missing_anvil_says_exactly_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("LIGHTPOST_ANVIL", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no anvil on PATH
    monkeypatch.setattr(anvil, "_candidate_roots", lambda: [tmp_path])  # no local install
    with pytest.raises(ChainProcessError) as err:
        anvil.find_anvil()
    assert "make anvil" in str(err.value)
    assert anvil.ANVIL_NPM_PACKAGE in str(err.value)


def test_env_var_wins_and_is_checked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "anvil"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("LIGHTPOST_ANVIL", str(fake))
    assert anvil.find_anvil() == str(fake)
    monkeypatch.setenv("LIGHTPOST_ANVIL", str(tmp_path / "nope"))
    with pytest.raises(ChainProcessError, match="LIGHTPOST_ANVIL"):
        anvil.find_anvil()


def _cli(*args: str, env_anvil: str | None = None) -> subprocess.CompletedProcess[str]:
    env = None
    if env_anvil is not None:
        env = {**os.environ, "LIGHTPOST_ANVIL": env_anvil}
    return subprocess.run(
        [sys.executable, "-m", "lightpost.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def test_devnet_not_up_is_one_line(tmp_path: Path) -> None:
    out = _cli("devnet", "status", "--dir", str(tmp_path / "none"))
    assert out.returncode != 0
    assert out.stderr.strip().startswith("lightpost: error: no devnet in")
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_devnet_up_without_anvil_is_one_line(tmp_path: Path) -> None:
    out = _cli(
        "devnet",
        "up",
        "--dir",
        str(tmp_path / "dn"),
        "--port",
        "1",
        env_anvil=str(tmp_path / "missing-anvil"),
    )
    assert out.returncode != 0
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert "LIGHTPOST_ANVIL" in out.stderr
