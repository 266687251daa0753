"""The console model's commands: issued from the page, seen on chain, and the devices' signed
results (a refusal or failure is also an integrity event). No I/O."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lightpost.core.keys import to_checksum_address
from lightpost.errors import DecodingError
from lightpost_agent.command import decode_command, decode_result
from lightpost_operator.console_text import MAX_TEXT, redact

if TYPE_CHECKING:
    from lightpost_operator.console_model import _Device, _Message

__all__ = ["MAX_COMMANDS", "CommandsMixin"]

MAX_COMMANDS = 200
"""Commands kept (by controller and command sequence number)."""


class CommandsMixin:
    """The commands half of :class:`~lightpost_operator.console_model.Model`."""

    commands: OrderedDict[str, dict[str, Any]]
    devices: dict[str, _Device]
    _secrets: tuple[str, ...]

    def _emit(self, kind: str, data: Any) -> None:
        raise NotImplementedError

    def _event(self, obj: Mapping[str, Any], now: float) -> None:
        raise NotImplementedError

    def _command_row(self, controller: str, command_seq: int) -> dict[str, Any]:
        cid = f"{controller}:{command_seq}"
        row = self.commands.get(cid)
        if row is None:
            row = self.commands[cid] = {
                "id": cid,
                "controller": controller,
                "command_seq": command_seq,
                "command": None,
                "target": None,
                "levels": {},
                "tx_hash": None,
                "state": None,
                "device_level": None,
                "result": None,
            }
            while len(self.commands) > MAX_COMMANDS:
                self.commands.popitem(last=False)
        return row

    def _command_message(self, msg: _Message, payload: bytes, level: str, now: float) -> None:
        try:
            command = decode_command(payload)
        except (DecodingError, ValueError):
            return
        row = self._command_row(msg.sender, command.command_seq)
        args = " ".join(f"{k}={v}" for k, v in command.args)
        row["command"] = f"{command.name} {args}".strip()[:MAX_TEXT]
        target = command.target
        if target.address is not None:
            address = to_checksum_address(target.address)
            dev = self.devices.get(address)
            row["target"] = dev.info.name if dev and dev.info.name else address
            row["device_level"] = dev.info.min_level if dev else None
        else:
            row["target"] = f"class:{target.device_class}"
        row["tx_hash"] = msg.tx_hash
        row["state"] = "on chain"
        row["levels"].setdefault(level, now)
        self._emit("command", row)

    def _result_message(self, msg: _Message, payload: bytes, level: str, now: float) -> None:
        try:
            result = decode_result(payload)
        except (DecodingError, ValueError):
            return
        row = self._command_row(to_checksum_address(result.controller), result.command_seq)
        dev = self.devices.get(msg.sender)
        first = row["result"] is None
        row["result"] = {
            "from": dev.info.name if dev and dev.info.name else msg.sender,
            "status": str(result.status),
            "reason": str(result.reason),
            "output": redact(result.output, self._secrets),
            "tx_hash": msg.tx_hash,
            "level": level,
        }
        row["state"] = str(result.status)
        self._emit("command", row)
        if first and str(result.status) != "executed":
            self._event(
                {
                    "problem": f"command-{result.status}",
                    "details": f"command {result.command_seq}: {result.reason}",
                    "sender": msg.sender,
                    "channel": msg.channel,
                    "tx_hash": msg.tx_hash,
                },
                now,
            )

    def on_command_issued(self, controller: str, command_seq: int, text: str, target: str) -> None:
        """A command issued from the page (before it is on chain)."""
        row = self._command_row(controller, command_seq)
        row.update(command=text[:MAX_TEXT], target=target, state="queued")
        self._emit("command", row)

    def on_command_state(self, controller: str, command_seq: int, state: str) -> None:
        row = self._command_row(controller, command_seq)
        if row["state"] in (None, "queued", "sending"):
            row["state"] = state[:MAX_TEXT]
            self._emit("command", row)
