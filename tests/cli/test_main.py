"""The CLI's command table: device commands built in, operator commands by entry point."""

from __future__ import annotations

import pytest

from lightpost.cli import main as cli_main


def test_operator_commands_come_from_the_operator_distribution() -> None:
    # the dev venv has lightpost-operator installed: its entry points add the commands
    _, handlers = cli_main.build_parser()
    assert handlers["devnet"] == "lightpost_operator.cli:cmd_devnet"
    assert handlers["demo"] == "lightpost_operator.demo:cmd_demo"
    assert set(cli_main.HANDLERS) == {"send", "node", "status", "receive", "command"}


def test_device_commands_do_not_look_for_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(group: str) -> list[object]:
        raise AssertionError("entry points read for a device command")

    monkeypatch.setattr(cli_main, "entry_points", refuse)
    with pytest.raises(SystemExit):  # argparse: --config is required
        cli_main.main(["status"])
    with pytest.raises(AssertionError, match="entry points read"):
        cli_main.main(["devnet", "status", "--dir", "x"])


@pytest.mark.parametrize(
    "argv", [["devnet", "up", "--dir", "x"], ["demo", "--duration", "5"], ["devnet"]]
)
def test_device_install_says_how_to_get_operator_commands(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    monkeypatch.setattr(cli_main, "entry_points", lambda group: [])  # as on a device
    assert cli_main.main(argv) == cli_main.EXIT_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lightpost: error: `lightpost ")
    assert "install lightpost-operator" in err[0]


def test_device_commands_still_parse_without_the_operator(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli_main, "entry_points", lambda group: [])
    with pytest.raises(SystemExit) as exit_:
        cli_main.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "send" in out and "devnet" not in out
