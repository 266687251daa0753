"""Finding anvil, and the one-line errors a new user meets around the devnet."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightpost.errors import ChainProcessError
from lightpost_operator import anvil
from tests.conftest import run_cli


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


def test_devnet_not_up_is_one_line(tmp_path: Path) -> None:
    out = run_cli("devnet", "status", "--dir", str(tmp_path / "none"))
    assert out.returncode != 0
    assert out.stderr.strip().startswith("lightpost: error: no devnet in")
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_devnet_up_without_anvil_is_one_line(tmp_path: Path) -> None:
    out = run_cli(
        "devnet",
        "up",
        "--dir",
        str(tmp_path / "dn"),
        "--port",
        "1",
        env={"LIGHTPOST_ANVIL": str(tmp_path / "missing-anvil")},
    )
    assert out.returncode != 0
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert "LIGHTPOST_ANVIL" in out.stderr
