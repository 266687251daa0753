"""`lightpost key new | import | address`, checked against eth-account as an independent reference.

Secrets (the password, the private key) never reach stdout or stderr; key files are 0600 and never
overwritten; standard scrypt unless --devnet.
"""

from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path

import pytest
from eth_account import Account

from lightpost.cli.main import main
from lightpost_operator.keywrite import LIGHT_SCRYPT_N, SCRYPT_N

PASSWORD = "correct horse battery staple"
KEY_HEX = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # anvil dev #1
ADDRESS = Account.from_key(KEY_HEX).address


@pytest.fixture
def pwfile(tmp_path: Path) -> Path:
    path = tmp_path / "pw"
    path.write_text(PASSWORD + "\n")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(["key", *argv])
    out, err = capsys.readouterr()
    assert PASSWORD not in out + err and KEY_HEX[2:] not in (out + err).lower()
    return rc, out, err


def test_new_writes_a_standard_keystore_eth_account_decrypts(
    tmp_path: Path, pwfile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "k.json"
    rc, out, _ = run(capsys, "new", "--out", str(out_file), "--password-file", str(pwfile))
    assert rc == 0
    doc = json.loads(out_file.read_text())
    assert doc["crypto"]["kdfparams"]["n"] == SCRYPT_N == 262144  # standard, not light
    assert (doc["crypto"]["kdfparams"]["r"], doc["crypto"]["kdfparams"]["p"]) == (8, 1)
    assert stat.S_IMODE(out_file.stat().st_mode) == 0o600
    secret = Account.decrypt(doc, PASSWORD)
    assert out.strip() == Account.from_key(secret).address


def test_import_from_stdin_round_trips_through_eth_account(
    tmp_path: Path,
    pwfile: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out_file = tmp_path / "k.json"
    monkeypatch.setattr("sys.stdin", io.StringIO(KEY_HEX + "\n"))
    argv = ("import", "--out", str(out_file), "--password-file", str(pwfile), "--devnet")
    rc, out, _ = run(capsys, *argv)
    assert (rc, out.strip()) == (0, ADDRESS)
    doc = json.loads(out_file.read_text())
    assert doc["crypto"]["kdfparams"]["n"] == LIGHT_SCRYPT_N  # --devnet: light, explicitly
    assert "0x" + Account.decrypt(doc, PASSWORD).hex() == KEY_HEX
    rc, out, _ = run(capsys, "address", str(out_file))
    assert (rc, out.strip()) == (0, ADDRESS)


def test_address_verify_reads_an_eth_account_keystore_with_the_env_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "theirs.json"
    path.write_text(json.dumps(Account.encrypt(KEY_HEX, PASSWORD, iterations=4096)))
    monkeypatch.setenv("LIGHTPOST_PASSWORD", PASSWORD)
    rc, out, _ = run(capsys, "address", str(path), "--verify")
    assert (rc, out.strip()) == (0, ADDRESS)
    assert "LIGHTPOST_PASSWORD" not in os.environ  # removed once read, as the node does
    monkeypatch.setenv("LIGHTPOST_PASSWORD", "wrong")
    rc, _, err = run(capsys, "address", str(path), "--verify")
    assert rc == 1 and err == "lightpost: error: wrong password (MAC mismatch)\n"


def test_import_from_a_key_file(
    tmp_path: Path, pwfile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = tmp_path / "key.hex"
    key_file.write_text(KEY_HEX[2:])
    out_file = tmp_path / "k.json"
    argv = ("import", "--key-file", str(key_file), "--out", str(out_file), "--devnet")
    rc, out, _ = run(capsys, *argv, "--password-file", str(pwfile))
    assert (rc, out.strip()) == (0, ADDRESS)


@pytest.mark.parametrize(
    ("stdin", "needle"),
    [
        ("zz" * 32, "invalid private key: not hexadecimal"),
        ("ab" * 31, "invalid private key: expected 32 bytes"),
        ("00" * 32, "invalid private key: outside the secp256k1 range"),
        ("ab" * 200, "too long"),
        ("", "invalid private key"),
    ],
)
def test_a_bad_key_is_one_line_that_does_not_echo_it(
    stdin: str,
    needle: str,
    tmp_path: Path,
    pwfile: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    out_file = tmp_path / "k.json"
    rc, out, err = run(capsys, "import", "--out", str(out_file), "--password-file", str(pwfile))
    assert rc == 1 and out == ""
    assert err.count("\n") == 1 and needle in err
    assert stdin[:16] not in err or not stdin
    assert not out_file.exists()


def test_an_existing_file_is_never_overwritten(
    tmp_path: Path, pwfile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "k.json"
    out_file.write_text("precious")
    rc, out, err = run(
        capsys, "new", "--out", str(out_file), "--devnet", "--password-file", str(pwfile)
    )
    assert rc == 1 and out == ""
    assert "already exists; refusing to overwrite" in err
    assert out_file.read_text() == "precious"


def test_without_a_password_source_or_terminal_it_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LIGHTPOST_PASSWORD", raising=False)

    def no_terminal(prompt: str = "") -> str:
        import getpass
        import warnings

        warnings.warn("Can not control echo on the terminal.", getpass.GetPassWarning, stacklevel=1)
        return "read-from-stdin-with-echo"

    monkeypatch.setattr("getpass.getpass", no_terminal)
    rc, _, err = run(capsys, "new", "--out", str(tmp_path / "k.json"), "--devnet")
    assert rc == 1 and "no password: pass --password-file or set LIGHTPOST_PASSWORD" in err
    assert not (tmp_path / "k.json").exists()


def test_the_prompt_asks_twice_and_refuses_a_mismatch_or_an_empty_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LIGHTPOST_PASSWORD", raising=False)
    answers = iter(["one", "two"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    rc, _, err = run(capsys, "new", "--out", str(tmp_path / "k.json"), "--devnet")
    assert rc == 1 and "the two passwords differ" in err
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "")
    rc, _, err = run(capsys, "new", "--out", str(tmp_path / "k.json"), "--devnet")
    assert rc == 1 and "the password is empty" in err
    answers = iter([PASSWORD, PASSWORD])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    rc, out, _ = run(capsys, "new", "--out", str(tmp_path / "k.json"), "--devnet")
    assert rc == 0
    doc = json.loads((tmp_path / "k.json").read_text())
    assert Account.from_key(Account.decrypt(doc, PASSWORD)).address == out.strip()


def test_a_key_is_never_taken_from_argv(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["key", "import", "--out", "x.json", KEY_HEX])
    assert exc.value.code == 2  # argparse: unrecognized argument
    capsys.readouterr()


def test_import_from_a_terminal_reads_the_key_without_echo(
    tmp_path: Path,
    pwfile: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

        def read(self, size: int | None = -1) -> str:
            raise AssertionError("an echoing read of the private key")

    prompts: list[str] = []

    def no_echo(prompt: str = "") -> str:
        prompts.append(prompt)
        return KEY_HEX

    monkeypatch.setattr("sys.stdin", Tty())
    monkeypatch.setattr("getpass.getpass", no_echo)
    out_file = tmp_path / "k.json"
    rc, out, _ = run(capsys, "import", "--out", str(out_file), "--password-file", str(pwfile),
                     "--devnet")  # fmt: skip
    assert rc == 0 and ADDRESS.lower() in out.lower()
    assert prompts and "private key" in prompts[0].lower()
