"""`lightpost init`: a config the node loads as written, 0600, endpoints never from argv."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import pytest

from lightpost.cli.main import main
from lightpost.node.config import load_config
from lightpost_operator.provision import read_endpoints

SECRET_URL = "https://rpc.invalid/v2/SECRETKEY123"
INBOX = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


@pytest.fixture
def keystore(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "device.json"
    path.parent.mkdir()
    path.write_text('{"address": "f39fd6e51aad88f6f4ce6ab8827279cfffb92266"}')
    return path


def init(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(["init", *argv])
    out, err = capsys.readouterr()
    assert "SECRETKEY123" not in out + err
    return rc, out, err


def test_init_writes_a_loadable_0600_config(
    tmp_path: Path,
    keystore: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "LIGHTPOST_ENDPOINTS", f"{SECRET_URL},http://127.0.0.1:8545, http://127.0.0.1:8546"
    )
    out = tmp_path / "conf" / "base.toml"
    out.parent.mkdir()
    rc, text, _ = init(capsys, "--chain", "base", "--keystore", str(keystore), "--out", str(out),
                       "--inbox", INBOX, "--channel", "meters", "--trust", INBOX)  # fmt: skip
    assert rc == 0 and "chain base, id 8453, 3 endpoint(s), quorum 2" in text
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    config = load_config(out, env={})
    assert config.chain_id == 8453 and config.profile is not None and config.profile.name == "base"
    assert config.keystore == keystore.resolve()  # relative to the config's directory
    assert config.data_dir == (out.parent / "base-data").resolve()
    assert config.endpoints[0] == SECRET_URL
    assert config.channel("meters") is not None
    # never overwritten
    rc, _, err = init(capsys, "--chain", "base", "--keystore", str(keystore), "--out", str(out))
    assert rc == 1 and "already exists; refusing to overwrite" in err


def test_endpoints_from_a_file_or_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "eps"
    path.write_text(f"# provider A\n{SECRET_URL}\n\n  http://127.0.0.1:8545  \n")
    assert read_endpoints(str(path), env={}) == [SECRET_URL, "http://127.0.0.1:8545"]
    monkeypatch.setattr("sys.stdin", io.StringIO("http://127.0.0.1:1\n"))
    assert read_endpoints("-", env={"LIGHTPOST_ENDPOINTS": "ignored"}) == ["http://127.0.0.1:1"]


@pytest.mark.parametrize(
    ("argv", "env", "needle"),
    [
        ([], {}, "no endpoints: pass --endpoints-file FILE"),
        ([], {"LIGHTPOST_ENDPOINTS": "ftp://127.0.0.1/x"}, "endpoints[0] is not an http(s) URL"),
        (
            ["--quorum", "1"],
            {"LIGHTPOST_ENDPOINTS": f"{SECRET_URL},http://127.0.0.1:1"},
            "not a majority",
        ),
        (["--inbox", "0x12"], {"LIGHTPOST_ENDPOINTS": SECRET_URL}, "--inbox:"),
        (["--endpoints-file", "/nonexistent/eps"], {}, "cannot read endpoints file"),
    ],
)
def test_bad_input_is_one_line_without_the_url(
    argv: list[str],
    env: dict[str, str],
    needle: str,
    tmp_path: Path,
    keystore: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LIGHTPOST_ENDPOINTS", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    out = tmp_path / "d.toml"
    rc, _, err = init(
        capsys, "--chain", "sepolia", "--keystore", str(keystore), "--out", str(out), *argv
    )
    assert rc == 1 and err.count("\n") == 1 and needle in err, err
    assert not out.exists()


def test_a_missing_keystore_says_how_to_make_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIGHTPOST_ENDPOINTS", SECRET_URL)
    rc, _, err = init(capsys, "--chain", "base", "--keystore", str(tmp_path / "nope.json"),
                      "--out", str(tmp_path / "d.toml"), "--mode", "direct")  # fmt: skip
    assert rc == 1 and "create one with `lightpost key new`" in err
