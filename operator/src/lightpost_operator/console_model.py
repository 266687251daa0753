"""The operator console's model: what the page shows, kept in bounded memory (no I/O).

One follower feeds it the receiver's JSON objects (``lightpost receive --json`` lines:
``type`` ``message`` or ``problem``, see lightpost.cli.receive_cmd) and a few chain readings
(gas of a transaction, balances, the base fee, the controller's outbox); every browser tab
reads the same model. Each change is also appended to a bounded change log that the
server streams as server-sent events; a tab that falls behind the log reloads the snapshot.

Everything here is bounded by a named constant (series, points, events, commands, messages,
transactions, change log), so memory stays flat however long the console runs. Time is an
argument (``now``, unix seconds); endpoints appear by label only.
"""

from __future__ import annotations

import itertools
import json
import statistics
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lightpost.core.gas import gas_used
from lightpost_agent.command import COMMANDS_CHANNEL, RESULTS_CHANNEL
from lightpost_operator.console_commands import MAX_COMMANDS, CommandsMixin
from lightpost_operator.console_cost import (
    COMMAND_CHANNELS,
    DAY_S,
    MAX_PAPER,
    MAX_TXS,
    MONTH_DAYS,
    cost_figures,
)
from lightpost_operator.console_text import (
    IGNORED_FIELDS,
    MAX_FIELDS,
    MAX_TEXT,
    event_title,
    numeric_fields,
    payload_bytes,
    redact,
)

__all__ = [  # the rest re-exported from the console_text, console_cost, console_commands parts
    "COMMAND_CHANNELS",
    "DAY_S",
    "IGNORED_FIELDS",
    "LEVELS",
    "MAX_COMMANDS",
    "MAX_FIELDS",
    "MAX_PAPER",
    "MAX_TEXT",
    "MAX_TXS",
    "MONTH_DAYS",
    "DeviceInfo",
    "Model",
    "event_title",
    "numeric_fields",
    "redact",
]

LEVELS = ("signed", "included", "final", "complete")
"""Verification levels, weakest first (lightpost.core.levels.Level)."""
FOLLOWED_FROM = "included"
"""The lowest level the console follows (console_follow.FOLLOW_LEVELS): a delivery at a higher
level marks the followed levels below it reached too."""

MAX_DEVICES = 512
"""Devices shown; a city's controller follows far fewer (each is a trusted sender in its config)."""

MAX_SERIES = 512
"""Chart series (channel, device, field): a few per device."""

MAX_POINTS = 240
"""Points per series: four minutes of one-per-second readings, enough for a phone-sized chart."""

MAX_MESSAGES = 1536
"""Messages whose proof trail is kept (oldest dropped first): the points the charts show for six
reading devices (6 x :data:`MAX_POINTS`); reached within minutes, so memory levels off early."""

MAX_EVENTS = 500
"""Integrity events kept, newest first (a repeat of the same event only bumps its count)."""

MAX_CHANGES = 2000
"""Change-log entries kept for server-sent events; a tab further behind reloads the snapshot."""

CADENCE_SAMPLES = 16
"""Arrivals of a device's transactions from which its cadence is estimated (median interval)."""

SILENCE_FACTOR = 3.0
"""A device is silent when nothing arrived for this many cadences."""

MIN_SILENCE_S = 30.0
"""...and for at least this long (a batching device sends in bursts)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceInfo:
    """What the operator told the console about a device (all optional but the address)."""

    address: str
    name: str = ""
    role: str = ""
    cadence_s: float | None = None
    min_level: str | None = None
    """The level at which the device executes commands (its agent's ``min_level``), if known."""


@dataclass
class _Device:
    info: DeviceInfo
    channels: set[str] = field(default_factory=set)
    last_seen: float | None = None
    last_reading: str = ""
    highest: str | None = None
    messages: int = 0
    arrivals: deque[float] = field(default_factory=lambda: deque(maxlen=CADENCE_SAMPLES))
    balance_wei: int | None = None
    outbox: dict[str, int] | None = None
    silent: bool = False


@dataclass
class _Message:
    key: str
    sender: str
    channel: str
    seq: int
    tx_hash: str
    block_number: int
    block_hash: str
    block_timestamp: int
    timestamp_ms: int
    recipient: str | None
    content_type: str
    text: str
    levels: dict[str, float] = field(default_factory=dict)
    retracted: bool = False


def _level_rank(level: str | None) -> int:
    return LEVELS.index(level) if level in LEVELS else -1


class Model(CommandsMixin):
    """The console's state. Feed it with :meth:`on_item` and the ``on_*`` readings; read it with
    :meth:`snapshot`, :meth:`changes_since` and :meth:`proof`. Not thread-safe (the server
    wraps it in a lock)."""

    def __init__(
        self,
        devices: Iterable[DeviceInfo] = (),
        *,
        controller: str | None = None,
        endpoints: Iterable[str] = (),
        secrets: Iterable[str] = (),
    ) -> None:
        self.controller = controller
        self.endpoints = list(endpoints)
        self._secrets = tuple(s for s in secrets if s)
        self.devices: dict[str, _Device] = {}
        for info in devices:
            self._device(info.address, info)
        self.series: OrderedDict[str, deque[dict[str, Any]]] = OrderedDict()
        self.messages: OrderedDict[str, _Message] = OrderedDict()
        self.events: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()
        self.counts: dict[str, Counter[str]] = {}
        self.commands: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.tx_gas: OrderedDict[str, int] = OrderedDict()
        self.tx_sender: OrderedDict[str, str] = OrderedDict()
        self.tx_messages: OrderedDict[str, set[str]] = OrderedDict()
        self.tx_time: OrderedDict[str, float] = OrderedDict()
        self.paper: OrderedDict[str, tuple[int, bool]] = OrderedDict()
        """Each message's gas alone in one transaction (the paper's cost) and whether it is a
        reading; kept longer than the proof trails, for every message in the cost window."""
        self.tx_arrived: OrderedDict[str, None] = OrderedDict()
        """Transactions that delivered a message (each one arrival for the cadence)."""
        self.base_fee_wei: int | None = None
        self.status: dict[str, Any] = {"follower": "starting", "heads": {}}
        self.changes: deque[tuple[int, str]] = deque(maxlen=MAX_CHANGES)
        self.version = 0
        self._next_event = 0
        self._cost_dirty = False
        self._dirty: set[str] = set()
        """Devices whose fleet row changed since the last tick (one row per round, not per item)."""

    # -- change log ---------------------------------------------------------------------------

    def _emit(self, kind: str, data: Any) -> None:
        self.version += 1
        line = json.dumps({"kind": kind, "data": data}, separators=(",", ":"), sort_keys=True)
        self.changes.append((self.version, line))

    def changes_since(self, version: int) -> tuple[list[tuple[int, str]], bool]:
        """Changes after ``version`` and whether the reader must reload (it fell behind the log)."""
        if version >= self.version:
            return [], False
        if not self.changes or self.changes[0][0] > version + 1:
            return [], True
        return [(v, line) for v, line in self.changes if v > version], False

    # -- devices -------------------------------------------------------------------------------

    def _device(self, address: str, info: DeviceInfo | None = None) -> _Device | None:
        dev = self.devices.get(address)
        if dev is None:
            if len(self.devices) >= MAX_DEVICES:
                return None
            dev = self.devices[address] = _Device(info or DeviceInfo(address=address))
        elif info is not None:
            dev.info = info
        return dev

    def _cadence(self, dev: _Device) -> float | None:
        if dev.info.cadence_s is not None:
            return dev.info.cadence_s
        if len(dev.arrivals) < 3:
            return None
        times = list(dev.arrivals)
        return statistics.median(b - a for a, b in itertools.pairwise(times))

    def _fleet_row(self, dev: _Device, now: float) -> dict[str, Any]:
        cadence = self._cadence(dev)
        role = dev.info.role or (
            "controller"
            if dev.info.address == self.controller
            else "sends on " + ", ".join(sorted(dev.channels))
        )
        return {
            "address": dev.info.address,
            "name": dev.info.name or dev.info.address[:10],
            "role": role if dev.channels or dev.info.role else "not heard yet",
            "last_seen": dev.last_seen,
            "ago_s": None if dev.last_seen is None else round(now - dev.last_seen, 1),
            "last_reading": dev.last_reading,
            "highest": dev.highest,
            "messages": dev.messages,
            "cadence_s": None if cadence is None else round(cadence, 2),
            "silent": dev.silent,
            "balance_wei": dev.balance_wei,
            "outbox": dev.outbox,
        }

    def _silent(self, dev: _Device, now: float) -> bool:
        if dev.last_seen is None:
            return False
        cadence = self._cadence(dev)
        if cadence is None:
            return False
        return now - dev.last_seen > max(SILENCE_FACTOR * cadence, MIN_SILENCE_S)

    def tick(self, now: float) -> None:
        """Once per follower round: the cost figures and the fleet rows that changed (once per
        round, not per item), and silence (a device goes silent with no event at all)."""
        if self._cost_dirty:
            self._cost_dirty = False
            self._emit("cost", self.cost())
        dirty, self._dirty = self._dirty, set()
        for dev in self.devices.values():
            silent = self._silent(dev, now)
            if silent != dev.silent or dev.info.address in dirty:
                dev.silent = silent
                self._emit("device", self._fleet_row(dev, now))

    # -- receiver items ------------------------------------------------------------------------

    def on_item(self, obj: Mapping[str, Any], now: float) -> None:
        """One receiver JSON object (a delivered message, a problem, or a proven post)."""
        if obj.get("type") == "problem":
            self.on_problem(obj, now)
        elif obj.get("type") == "post":
            self.on_post(obj, now)
        elif obj.get("type") == "message":
            self.on_message(obj, now)

    def on_message(self, obj: Mapping[str, Any], now: float) -> None:
        sender = str(obj["sender"])
        channel = str(obj.get("channel"))
        seq = int(obj["seq"])
        level = str(obj["level"])
        key = f"{sender}:{channel}:{seq}"
        msg = self.messages.get(key)
        payload = payload_bytes(obj)
        if msg is None or msg.tx_hash != obj.get("tx_hash"):
            msg = _Message(
                key=key,
                sender=sender,
                channel=channel,
                seq=seq,
                tx_hash=str(obj.get("tx_hash")),
                block_number=int(obj.get("block_number", 0)),
                block_hash=str(obj.get("block_hash")),
                block_timestamp=int(obj.get("block_timestamp", 0)),
                timestamp_ms=int(obj.get("timestamp", 0)),
                recipient=obj.get("recipient"),
                content_type=str(obj.get("content_type")),
                text=self._text(obj, payload),
            )
            self.messages[key] = msg
            self.paper[key] = (gas_used(payload), channel not in COMMAND_CHANNELS)
            while len(self.paper) > MAX_PAPER:
                self.paper.popitem(last=False)
            while len(self.messages) > MAX_MESSAGES:
                self.messages.popitem(last=False)
        self.messages.move_to_end(key)
        msg.retracted = False
        first_sighting = not msg.levels
        for implied in LEVELS[_level_rank(FOLLOWED_FROM) : _level_rank(level) + 1]:
            # the ladder is cumulative: a message proven complete was proven final with it, even
            # when its `final` poll comes a round later
            msg.levels.setdefault(implied, now)
        self._count_tx(msg, now)
        dev = self._device(sender)
        if dev is not None:
            dev.channels.add(channel)
            if _level_rank(level) > _level_rank(dev.highest):
                dev.highest = level
            if first_sighting:
                dev.messages += 1
                dev.last_seen = now
                if channel not in COMMAND_CHANNELS:
                    dev.last_reading = msg.text
            dev.silent = self._silent(dev, now)
            self._dirty.add(sender)
        if channel == COMMANDS_CHANNEL:
            self._command_message(msg, payload, level, now)
        elif channel == RESULTS_CHANNEL:
            self._result_message(msg, payload, level, now)
        else:
            self._points(msg, obj, level)

    def _text(self, obj: Mapping[str, Any], payload: bytes) -> str:
        if obj.get("payload_encoding") == "hex":
            return f"{len(payload)} bytes ({obj.get('content_type')})"
        return redact(str(obj.get("payload", "")), self._secrets)

    def _count_tx(self, msg: _Message, now: float) -> None:
        """The delivering transaction of ``msg``: counted for cost, and one arrival for the
        device's cadence (a chunk's earlier transactions come as posts: cost only)."""
        self._tx(msg.tx_hash, msg.sender, msg.key, msg.block_timestamp or now)
        if msg.tx_hash not in self.tx_arrived:
            self.tx_arrived[msg.tx_hash] = None
            while len(self.tx_arrived) > MAX_TXS:
                self.tx_arrived.popitem(last=False)
            dev = self.devices.get(msg.sender)
            if dev is not None:
                dev.arrivals.append(self.tx_time[msg.tx_hash])

    def _tx(self, tx: str, sender: str, key: str, t: float) -> None:
        if tx not in self.tx_messages:
            self.tx_messages[tx] = set()
            self.tx_sender[tx] = sender
            # block time, not arrival: a catch-up over old blocks must not look like a burst
            self.tx_time[tx] = t
            for book in (self.tx_messages, self.tx_sender, self.tx_time):
                while len(book) > MAX_TXS:
                    book.popitem(last=False)
        self.tx_messages[tx].add(key)

    def on_post(self, obj: Mapping[str, Any], now: float) -> None:
        """One proven post of a trusted sender (console_follow.post_json): its transaction counts
        for the cost of every message it carried a record or a chunk of."""
        sender, channel, tx = str(obj["sender"]), str(obj.get("channel")), str(obj["tx_hash"])
        t = int(obj.get("block_timestamp") or 0) or now
        for seq in obj.get("seqs") or ():
            self._tx(tx, sender, f"{sender}:{channel}:{int(seq)}", t)

    def _points(self, msg: _Message, obj: Mapping[str, Any], level: str) -> None:
        values = numeric_fields(str(obj.get("payload", ""))) if msg.content_type == "json" else {}
        if not values:
            values = {"bytes": float(len(payload_bytes(obj)))}
        # the device's signed timestamp orders readings within a block; the block's otherwise
        t = msg.timestamp_ms / 1000 if msg.timestamp_ms else msg.block_timestamp
        for name, value in values.items():
            sid = f"{msg.channel}|{msg.sender}|{name}"
            points = self.series.get(sid)
            if points is None:
                if len(self.series) >= MAX_SERIES:
                    continue
                points = self.series[sid] = deque(maxlen=MAX_POINTS)
            existing = next((p for p in points if p["k"] == msg.key), None)
            if existing is not None:
                if _level_rank(level) <= _level_rank(existing["lvl"]) and not existing.get("r"):
                    continue
                existing["lvl"] = level
                existing.pop("r", None)
                point = existing
            else:
                point = {"k": msg.key, "t": t, "v": value, "lvl": level}
                points.append(point)
            self._emit("point", {"s": sid, **point})

    # -- problems -----------------------------------------------------------------------------

    def on_problem(self, obj: Mapping[str, Any], now: float) -> None:
        if obj.get("problem") == "retracted":
            key = f"{obj.get('sender')}:{obj.get('channel')}:{obj.get('seq')}"
            msg = self.messages.get(key)
            if msg is not None:
                msg.retracted = True
                for sid, points in self.series.items():
                    for p in points:
                        if p["k"] == key:
                            p["r"] = True
                            self._emit("point", {"s": sid, **p})
        self._event(obj, now)

    def _event(self, obj: Mapping[str, Any], now: float) -> None:
        kind = str(obj.get("problem"))
        endpoints = tuple(str(e) for e in obj.get("endpoints") or ())
        details = redact(str(obj.get("details", "")), self._secrets)
        key = (
            kind,
            obj.get("tx_hash"),
            obj.get("seq"),
            endpoints,
            obj.get("sender"),
            obj.get("channel"),
            obj.get("block_number"),
            details,
        )
        ev = self.events.get(key)
        if ev is not None:
            ev["count"] += 1
            ev["last_t"] = now
            self.events.move_to_end(key)
            self._emit("event", ev)
            return
        self._next_event += 1
        sender = obj.get("sender")
        dev = self.devices.get(str(sender)) if sender else None
        ev = {
            "id": self._next_event,
            "kind": kind,
            "title": event_title(kind, endpoints),
            "details": details,
            "endpoints": list(endpoints),
            "device": (dev.info.name or dev.info.address) if dev else sender,
            "channel": obj.get("channel"),
            "seq": obj.get("seq"),
            "tx_hash": obj.get("tx_hash"),
            "block_number": obj.get("block_number"),
            "missing": obj.get("missing"),
            "first_t": now,
            "last_t": now,
            "count": 1,
        }
        self.events[key] = ev
        while len(self.events) > MAX_EVENTS:
            self.events.popitem(last=False)
        for label in endpoints or ("(no endpoint named)",):
            self.counts.setdefault(label, Counter())[kind] += 1
        self._emit("event", ev)
        self._emit("counts", self._counts())

    def _counts(self) -> dict[str, dict[str, int]]:
        return {label: dict(c) for label, c in sorted(self.counts.items())}

    # -- chain readings -----------------------------------------------------------------------

    def unknown_gas(self) -> list[str]:
        """Transactions seen in deliveries whose gas is not known yet (oldest first)."""
        return [tx for tx in self.tx_messages if tx not in self.tx_gas]

    def on_gas(self, tx_hash: str, gas: int) -> None:
        self.tx_gas[tx_hash] = gas
        while len(self.tx_gas) > MAX_TXS:
            self.tx_gas.popitem(last=False)
        self._cost_dirty = True

    def on_base_fee(self, wei: int) -> None:
        if wei != self.base_fee_wei:
            self.base_fee_wei = wei
            self._cost_dirty = True

    def on_balance(self, address: str, wei: int, now: float) -> None:
        dev = self._device(address)
        if dev is not None and dev.balance_wei != wei:
            dev.balance_wei = wei
            self._emit("device", self._fleet_row(dev, now))

    def on_outbox(self, address: str, counts: Mapping[str, int], now: float) -> None:
        dev = self._device(address)
        backlog = {k: int(v) for k, v in counts.items() if k != "final" and v}
        if dev is not None and dev.outbox != backlog:
            dev.outbox = backlog
            self._emit("device", self._fleet_row(dev, now))

    def on_status(self, **fields: Any) -> None:
        """Follower health and heads (shown in the page header)."""
        fields = {
            k: redact(v, self._secrets) if isinstance(v, str) else v for k, v in fields.items()
        }
        changed = {k: v for k, v in fields.items() if self.status.get(k) != v}
        if changed:
            self.status.update(changed)
            self._emit("status", self.status)

    # -- cost ----------------------------------------------------------------------------------

    def cost(self) -> dict[str, Any]:
        """The cost figures of the remembered transactions (lightpost_operator.console_cost)."""
        return cost_figures(
            tx_gas=self.tx_gas,
            tx_messages=self.tx_messages,
            tx_sender=self.tx_sender,
            tx_time=self.tx_time,
            paper=self.paper,
            names={a: d.info.name for a, d in self.devices.items()},
            base_fee_wei=self.base_fee_wei,
        )

    # -- reading ---------------------------------------------------------------------------------

    def proof(self, key: str) -> dict[str, Any] | None:
        """The proof trail of one message: transaction, block, each level reached and when, and
        the integrity events about its transaction (which endpoints were caught)."""
        msg = self.messages.get(key)
        if msg is None:
            return None
        related = [
            {"title": e["title"], "endpoints": e["endpoints"], "count": e["count"]}
            for e in self.events.values()
            if e["tx_hash"] == msg.tx_hash
        ]
        dev = self.devices.get(msg.sender)
        return {
            "key": key,
            "device": dev.info.name if dev and dev.info.name else msg.sender,
            "sender": msg.sender,
            "channel": msg.channel,
            "seq": msg.seq,
            "payload": msg.text,
            "tx_hash": msg.tx_hash,
            "block_number": msg.block_number,
            "block_hash": msg.block_hash,
            "block_timestamp": msg.block_timestamp,
            "levels": [
                {"level": lvl, "at": msg.levels[lvl]} for lvl in LEVELS if lvl in msg.levels
            ],
            "retracted": msg.retracted,
            "events": related,
        }

    def snapshot(self, now: float) -> dict[str, Any]:
        """Everything the page draws, as JSON-ready data, with the change-log version."""
        return {
            "version": self.version,
            "status": self.status,
            "endpoints": self.endpoints,
            "fleet": [self._fleet_row(d, now) for d in self.devices.values()],
            "series": [{"s": sid, "points": list(points)} for sid, points in self.series.items()],
            "events": list(reversed(self.events.values())),
            "counts": self._counts(),
            "commands": list(reversed(self.commands.values())),
            "cost": self.cost(),
        }
