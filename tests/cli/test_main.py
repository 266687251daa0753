"""The CLI's command table: device commands built in, operator commands by entry point."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightpost.cli import main as cli_main


def test_operator_commands_come_from_the_operator_distribution() -> None:
    # the dev venv has lightpost-operator installed: its entry points add the commands
    _, handlers = cli_main.build_parser()
    assert handlers["devnet"] == "lightpost_operator.cli:cmd_devnet"
    assert handlers["demo"] == "lightpost_operator.demo:cmd_demo"
    # the controller's `command` is an operator tool too (not installed on devices)
    assert handlers["command"] == "lightpost_operator.command_cmd:cmd_command"
    # key management is provisioning: an operator tool too (the device core only reads its keystore)
    assert handlers["key"] == "lightpost_operator.key_cmd:cmd_key"
    assert set(cli_main.HANDLERS) == {"send", "node", "status", "receive"}


def test_device_commands_do_not_look_for_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(group: str) -> list[object]:
        raise AssertionError("entry points read for a device command")

    monkeypatch.setattr(cli_main, "entry_points", refuse)
    with pytest.raises(SystemExit):  # argparse: --config is required
        cli_main.main(["status"])
    with pytest.raises(AssertionError, match="entry points read"):
        cli_main.main(["devnet", "status", "--dir", "x"])


@pytest.mark.parametrize(
    "argv",
    [
        ["devnet", "up", "--dir", "x"],
        ["demo", "--duration", "5"],
        ["devnet"],
        ["command", "--config", "c.toml", "--target", "0x00", "set", "a=1"],
    ],
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


def test_a_minority_quorum_is_one_error_line_or_one_warning_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli_main, "_dispatch_handler", lambda args, handlers: 0)
    config = tmp_path / "device.toml"
    lines = [
        "chain_id = 31337",
        'endpoints = ["http://127.0.0.1:8545", "http://127.0.0.1:8546"]',
        "quorum = 1",
        'keystore = "k.json"',
        'data_dir = "data"',
        'mode = "direct"',
    ]
    config.write_text("\n".join(lines) + "\n")
    assert cli_main.main(["status", "--config", str(config)]) == cli_main.EXIT_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lightpost: error: config: `quorum` 1 of 2")
    config.write_text("\n".join([*lines, "allow_minority_quorum = true"]) + "\n")
    assert cli_main.main(["status", "--config", str(config)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "lightpost: warning: quorum 1 of 2 endpoints is not a majority "
        "(allow_minority_quorum = true): a minority of endpoints can decide an answer"
    ]


def test_every_operator_command_is_known_to_the_device_cli() -> None:
    """A device without lightpost-operator says how to get each of its commands: the list
    the core keeps must name every entry point the operator distribution registers."""
    import tomllib
    from pathlib import Path

    from lightpost.cli.main import OPERATOR_COMMANDS, PLUGIN_GROUP

    operator = Path(__file__).resolve().parents[2] / "operator" / "pyproject.toml"
    registered = tomllib.loads(operator.read_text())["project"]["entry-points"][PLUGIN_GROUP]
    assert set(registered) == set(OPERATOR_COMMANDS)
