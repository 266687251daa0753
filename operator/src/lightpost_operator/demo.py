"""`lightpost demo`: a small smart city on a local devnet, talking with integrity under attack.

What runs (each device is its own OS process with its own key, store and endpoint list):

- meters and air-quality sensors publish readings on the ``district-1`` channel;
- ``camera-1`` publishes event digests large enough to be chunked over transactions;
- ``controller`` receives the readings verified (included / final / complete) and reacts:
  when a sensor reports bad air it commands ``valve-1`` to open further;
- ``valve-1`` runs the on-device agent: it executes verified commands from the
  controller and sends a signed result back, which the controller receives;
- ``mqtt-N``: devices without an operating system, under the real MicroPython interpreter with a
  64 KiB heap, publish signed readings over MQTT (Mosquitto); the devnet's gateway anchors them
  and the demo counts each one delivered only once verified through the gateway
  (:mod:`lightpost_operator.demo_mqtt`). Without MicroPython or Mosquitto the demo says so in one
  line and runs without them (``--require-mqtt``: it fails instead).

Every device's endpoint list is [anvil, an honest forwarding proxy, a LYING proxy] with a
quorum of 2. During the run the lying proxy alters a reading, hides a reading and forges
a command. The demo prints each detection as it happens, a live view, and a final report
(``--json``: machine-readable). Exit status 0 only when every integrity property held:
nothing forged was accepted, nothing sent was lost, every hidden message was detected.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightpost.adapters.rpc import HttpEndpoint
from lightpost.core.envelope import channel_id
from lightpost.errors import ConfigError
from lightpost.node.chain import Chain
from lightpost_agent.command import COMMANDS_CHANNEL, RESULTS_CHANNEL
from lightpost_operator.anvil import free_port
from lightpost_operator.demo_attacks import (
    FORGED_TX_HASH,
    CommandForgery,
    HideOneReading,
    ReadingAlteration,
)
from lightpost_operator.demo_device import CAMERA_CHANNEL, CITY_CHANNEL
from lightpost_operator.demo_mqtt import MqttDevice, MqttFleet, mqtt_unavailable
from lightpost_operator.devnet import devnet_down, devnet_up
from lightpost_operator.proxy import LyingProxy

__all__ = ["cmd_demo", "run_demo"]

DEMO_QUORUM = 2
"""2 of [anvil, honest proxy, lying proxy] must agree: one liar cannot win."""

SENSOR_BATCH_DELAY_S = 5.0
"""Sensors aggregate readings for up to 5 s per transaction: fewer, fuller transactions
(cheaper per reading) at the price of up to 5 s of extra latency."""

CAMERA_BATCH_BYTES = 2048
"""The camera's posts are at most 2 KB, so its ~6 KB digests are chunked."""

DRAIN_TIMEOUT_S = 60.0
"""After the run: how long to wait for the last readings to become final/complete."""

COLLECT_INTERVAL_S = 1.0
"""How often the devices' event lines are read (and detections printed)."""

LIVE_LINE_EVERY_S = 5.0
"""How often the live status line is printed."""


@dataclass
class Device:
    name: str
    role: str
    address: str = ""
    config: Path = Path()
    events: Path = Path()
    proc: subprocess.Popen[bytes] | None = None
    offset: int = 0


@dataclass
class Tally:
    """Everything the report is computed from (fed by the devices' event lines)."""

    sent: dict[tuple[str, str, int], dict[str, Any]] = field(default_factory=dict)
    delivered: dict[str, dict[tuple[str, str, int], dict[str, Any]]] = field(
        default_factory=lambda: {"included": {}, "final": {}, "complete": {}}
    )
    forged_accepted: list[dict[str, Any]] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)
    txs: dict[str, dict[str, Any]] = field(default_factory=dict)
    commands_sent: int = 0
    commands_executed: int = 0
    commands_refused: int = 0
    results_received: int = 0
    errors: list[str] = field(default_factory=list)


def city(devices: int) -> list[tuple[str, str]]:
    """(name, role) for a city with ``devices`` sensors (>= 2) plus camera, valve, controller."""
    if devices < 2:
        raise ConfigError("--devices must be at least 2 (a meter and an air sensor)")
    sensors = []
    for i in range(devices):
        kind = "meter" if i % 2 == 0 else "air"
        sensors.append((f"{kind}-{i // 2 + 1}", kind))
    return [*sensors, ("camera-1", "camera"), ("valve-1", "valve"), ("controller", "controller")]


def _device_options(
    name: str, addresses: dict[str, str], roles: dict[str, str], endpoints: list[str]
) -> dict[str, Any]:
    sensors = [a for n, a in addresses.items() if roles[n] in ("meter", "air")]
    cameras = [a for n, a in addresses.items() if roles[n] == "camera"]
    controller = addresses["controller"]
    valves = [a for n, a in addresses.items() if roles[n] == "valve"]
    trusted = {
        CITY_CHANNEL: sensors,
        CAMERA_CHANNEL: cameras,
        COMMANDS_CHANNEL: [controller],
        RESULTS_CHANNEL: valves,
    }
    extra = ""
    send = {"batch_bytes": 4096, "max_delay_s": SENSOR_BATCH_DELAY_S}
    if roles[name] == "camera":
        send = {"batch_bytes": CAMERA_BATCH_BYTES, "max_delay_s": 1.0}
    elif roles[name] in ("valve", "controller"):
        send = {"batch_bytes": 4096, "max_delay_s": 0.5}
    if roles[name] == "valve":
        extra += (
            '\n[agent]\nenabled = true\ndevice_class = "valve"\nmin_level = "final"\n'
            f'actuators = ["valve"]\n\n[agent.controllers]\n"{controller}" = ["set"]\n'
        )
    return {
        "endpoints": endpoints,
        "quorum": DEMO_QUORUM,
        "trusted": trusted,
        "extra": extra,
        **send,
    }


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


class Demo:
    """Set-up, live view and report of one demo run."""

    def __init__(self, args: argparse.Namespace, directory: Path, out: Any = sys.stdout) -> None:
        self.args = args
        self.dir = directory
        self.out = out
        self.tally = Tally()
        self.devices: list[Device] = []
        self.started = 0.0
        self.alteration = ReadingAlteration(channel=channel_id(CITY_CHANNEL))
        self.hiding = HideOneReading(channel=channel_id(CITY_CHANNEL))
        self.forgery = CommandForgery(channel=channel_id(COMMANDS_CHANNEL))
        self.liar: LyingProxy | None = None
        self.honest: LyingProxy | None = None
        self.announced: set[str] = set()
        self.console: Any = None
        self.mqtt: MqttFleet | None = None
        self.chain: Chain | None = None
        self.mqtt_skipped = ""

    # -- set-up -------------------------------------------------------------------------

    def setup(self) -> None:
        port = free_port()
        upstream = f"http://127.0.0.1:{port}"
        self.honest = LyingProxy(upstream, [], label="honest").start()
        self.liar = LyingProxy(
            upstream, [self.alteration, self.hiding, self.forgery], label="liar"
        ).start()
        roles = dict(city(self.args.devices))
        endpoints = [upstream, self.honest.url, self.liar.url]
        mqtt_devices = self._mqtt_devices()
        self._say(
            f"starting a devnet (anvil on {upstream}, block time {self.args.block_time}s) "
            f"with {len(roles)} devices; every device asks 3 endpoints, one of them lies"
            + (
                f"; {mqtt_devices} MQTT devices under MicroPython (64 KiB heap) via a gateway"
                if mqtt_devices
                else ""
            )
        )
        desc = devnet_up(
            self.dir / "devnet",
            port=port,
            block_time=self.args.block_time,
            names=list(roles),
            customize=lambda name, addrs: _device_options(name, addrs, roles, endpoints),
            gateway=mqtt_devices > 0,
            mqtt_devices=max(mqtt_devices, 1),
        )
        # the demo's own view of the chain for the gateway's records: the same three endpoints
        self.chain = Chain(
            [HttpEndpoint(url, f"rpc#{i}") for i, url in enumerate(endpoints)], quorum=DEMO_QUORUM
        )
        self.forgery.controller = bytes.fromhex(
            next(d["address"] for d in desc["devices"] if d["name"] == "controller")[2:]
        )
        self.forgery.valve = bytes.fromhex(
            next(d["address"] for d in desc["devices"] if d["name"] == "valve-1")[2:]
        )
        events = self.dir / "events"
        events.mkdir(parents=True, exist_ok=True)
        if mqtt_devices:
            self.mqtt = MqttFleet(
                desc["gateway"],
                chain_id=desc["chain_id"],
                directory=events,
                stop_file=self.dir / "stop",
                on_sent=self.tally.sent.__setitem__,
                on_delivered=self._delivered,
                on_problem=self._say,
            )
        for entry in desc["devices"]:
            self.devices.append(
                Device(
                    name=entry["name"],
                    role=roles[entry["name"]],
                    address=entry["address"],
                    config=Path(entry["config"]),
                    events=events / f"{entry['name']}.jsonl",
                )
            )

    def _mqtt_devices(self) -> int:
        """How many MQTT devices run: --mqtt-devices, or 0 (said in one line) when MicroPython
        or Mosquitto is missing; --require-mqtt makes that an error."""
        wanted = int(getattr(self.args, "mqtt_devices", 0))
        reason = mqtt_unavailable() if wanted > 0 else None
        if reason is None:
            return wanted
        if getattr(self.args, "require_mqtt", False):
            raise ConfigError(f"--require-mqtt: {reason}")
        self.mqtt_skipped = reason
        self._say(f"MQTT devices skipped: {reason}")
        return 0

    def _delivered(self, key: tuple[str, str, int], level: str, ev: dict[str, Any]) -> None:
        sent = self.tally.sent.get(key)
        if sent is not None and sent.get("sha256") != ev.get("sha256"):
            self.tally.forged_accepted.append(ev)
            self._say(f"!! a receiver ACCEPTED A FORGED READING {key}")
        self.tally.delivered.setdefault(level, {})[key] = ev

    def start_devices(self) -> None:
        self.started = time.time()
        if self.mqtt is not None:
            self.mqtt.start()
        for dev in self.devices:
            log = open(self.dir / "events" / f"{dev.name}.log", "ab")  # noqa: SIM115
            dev.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "lightpost_operator.demo_device",
                    "--role",
                    dev.role,
                    "--config",
                    str(dev.config),
                    "--events",
                    str(dev.events),
                    "--duration",
                    str(self.args.duration),
                    "--stop-file",
                    str(self.dir / "stop"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            log.close()

    def stop_devices(self) -> None:
        if self.mqtt is not None:
            self.mqtt.stop()
        for dev in self.devices:
            if dev.proc and dev.proc.poll() is None:
                dev.proc.send_signal(signal.SIGTERM)
        for dev in self.devices:
            if dev.proc:
                try:
                    dev.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    dev.proc.kill()
                    dev.proc.wait(timeout=5)

    def open_console(self) -> None:
        """`--console`: the operator's console on the controller's config, with the city's names."""
        from lightpost.node.config import load_config
        from lightpost_operator.console_model import DeviceInfo
        from lightpost_operator.console_server import open_console

        controller = next(d for d in self.devices if d.role == "controller")
        self.console = open_console(
            load_config(controller.config),
            port=self.args.console_port,
            devices=[
                DeviceInfo(
                    address=d.address,
                    name=d.name,
                    role=d.role,
                    min_level="final" if d.role == "valve" else None,
                )
                for d in self.devices
            ],
            since=0,
        )
        url = self.console[0].url
        self._say(f"operator's console: {url}")
        if not self.args.no_browser:
            import webbrowser

            webbrowser.open(url)

    def teardown(self) -> None:
        if self.console is not None:
            for part in self.console:
                part.stop()
        self.stop_devices()
        if self.chain is not None:
            self.chain.close()
        for proxy in (self.liar, self.honest):
            if proxy is not None:
                proxy.stop()
        if (self.dir / "devnet" / "devnet.json").exists():
            devnet_down(self.dir / "devnet")

    # -- events ---------------------------------------------------------------------------

    def _lines(self, dev: Device | MqttDevice) -> Iterator[dict[str, Any]]:
        try:
            with dev.events.open("rb") as fh:
                fh.seek(dev.offset)
                data = fh.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1
        dev.offset += end
        for line in data[:end].splitlines():
            try:
                yield json.loads(line)
            except ValueError:
                self.tally.errors.append(f"{dev.name}: unreadable event line")

    def collect(self, *, verify_now: bool = False) -> None:
        for dev in self.devices:
            for ev in self._lines(dev):
                self._event(dev, ev)
        if self.mqtt is not None and self.chain is not None:
            self.mqtt.collect(lambda d: list(self._lines(d)))
            self.mqtt.verify(self.chain, force=verify_now)

    def _event(self, dev: Device, ev: dict[str, Any]) -> None:
        t = self.tally
        kind = ev.get("kind")
        if kind == "sent":
            t.sent[(ev["sender"], ev["channel"], ev["seq"])] = ev
        elif kind == "delivered":
            key = (ev["sender"], ev["channel"], ev["seq"])
            sent = t.sent.get(key)
            if sent is not None and sent.get("sha256") != ev.get("sha256"):
                t.forged_accepted.append(ev)
                self._say(f"!! {dev.name} ACCEPTED A FORGED MESSAGE {key}")
            if sent is not None:  # results etc. are counted elsewhere
                t.delivered.setdefault(ev["level"], {})[key] = ev
        elif kind == "problem":
            t.problems.append({**ev, "device": dev.name})
            self._announce_problem(dev, ev)
        elif kind == "tx":
            t.txs[ev["tx_hash"]] = ev
        elif kind == "command-sent":
            t.commands_sent += 1
            self._say(f"   controller: {ev['reason']} -> command `{ev['command']}` to valve-1")
        elif kind == "command-decision":
            if ev["status"] == "executed":
                t.commands_executed += 1
                self._say(f"   valve-1 executed `{ev['command']}` (verified at {ev['level']})")
            else:
                t.commands_refused += 1
                self._say(f"   valve-1 refused a command: {ev['reason']}")
        elif kind == "result-received":
            t.results_received += 1
            self._say(f"   controller got valve-1's signed result: {ev['status']}")
        elif kind == "error":
            t.errors.append(f"{dev.name}: {ev.get('message')}")
            self._say(f"!! {dev.name}: {ev.get('message')}")

    def _announce_problem(self, dev: Device, ev: dict[str, Any]) -> None:
        key = f"{dev.name}:{ev.get('problem')}:{ev.get('tx_hash')}:{ev.get('seq')}"
        if key in self.announced:
            return
        self.announced.add(key)
        what = {
            "proof-failure": "BLOCKED forged data",
            "hidden": "DETECTED a hidden message",
            "disagreement": "noted endpoint disagreement",
        }.get(str(ev.get("problem")), f"problem {ev.get('problem')}")
        self._say(f"** {dev.name}: {what}: {ev.get('details', '')[:110]}")

    # -- view and report ----------------------------------------------------------------------

    def _say(self, line: str) -> None:
        if not self.args.json:
            print(line, file=self.out, flush=True)

    def view(self) -> str:
        t = self.tally
        elapsed = time.time() - self.started
        gas = sum(int(x.get("gas_used", 0)) for x in t.txs.values())
        running = sum(1 for d in self.devices if d.proc and d.proc.poll() is None)
        pending = sum(1 for k in t.sent if k not in t.delivered["complete"])
        mqtt = ""
        if self.mqtt is not None:
            mine = [k for k, v in t.sent.items() if v.get("role") == "mqtt"]
            done = sum(1 for k in mine if k in t.delivered["complete"])
            mqtt = (
                f" | mqtt {self.mqtt.running()}/{len(self.mqtt.devices)} sent {len(mine)} "
                f"complete {done}"
            )
        return (
            f"[{elapsed:5.0f}s] devices {running}/{len(self.devices)} | sent {len(t.sent):4d} "
            f"pending {pending:3d} | delivered: included {len(t.delivered['included']):4d} "
            f"final {len(t.delivered['final']):4d} complete {len(t.delivered['complete']):4d} | "
            f"txs {len(t.txs):3d} gas {gas:,} | attacks {self.attacks_attempted()} caught "
            f"{self.attacks_caught()} | commands {t.commands_executed} run, "
            f"{t.commands_refused} refused{mqtt}"
        )

    def attacks_attempted(self) -> int:
        return sum(1 for lie in (self.alteration, self.hiding, self.forgery) if lie.fired > 0)

    def _problems(self, *kinds: str) -> list[dict[str, Any]]:
        return [p for p in self.tally.problems if p.get("problem") in kinds]

    def _caught(self, kind: str, tx_hash: str | None, device: str | None = None) -> bool:
        """A problem of ``kind`` about exactly the victim transaction was reported."""
        return tx_hash is not None and any(
            str(p.get("tx_hash")).lower() == tx_hash.lower()
            and (device is None or p["device"] == device)
            for p in self._problems(kind)
        )

    def attack_outcomes(self) -> dict[str, dict[str, Any]]:
        altered = self.alteration.victim[0] if self.alteration.victim else None
        hidden = self.hiding.victim[0] if self.hiding.victim else None
        return {
            "reading altered": {
                "fired": self.alteration.fired,
                "caught": self._caught("proof-failure", altered),
            },
            "reading hidden": {
                "fired": self.hiding.fired,
                "caught": self._caught("hidden", hidden),
            },
            "command forged": {
                "fired": self.forgery.fired,
                "caught": self._caught("proof-failure", FORGED_TX_HASH, "valve-1"),
            },
        }

    def attacks_caught(self) -> int:
        return sum(1 for a in self.attack_outcomes().values() if a["fired"] and a["caught"])

    def report(self) -> dict[str, Any]:
        t = self.tally
        readings = {k: v for k, v in t.sent.items() if v.get("role") in ("meter", "air")}
        # the strongest level is the bar: a message not delivered `complete` counts as lost
        complete = t.delivered["complete"]
        lost = sorted(k for k in t.sent if k not in complete)
        latency: dict[str, dict[str, float | None]] = {}
        for level, got in t.delivered.items():
            values = [got[k]["t"] - t.sent[k]["t"] for k in got if k in t.sent]
            latency[level] = {
                "p50_s": _percentile(values, 50),
                "p95_s": _percentile(values, 95),
                "count": float(len(values)),
            }
        gas = sum(int(x.get("gas_used", 0)) for x in t.txs.values())
        # the paper's cost: each reading as its own transaction, raw bytes as calldata
        paper = [int(v["paper_gas"]) for v in readings.values() if "paper_gas" in v]
        messages_in_txs = sum(int(x.get("messages", 0)) for x in t.txs.values())
        reading_gas = sum(
            int(x.get("gas_used", 0)) for x in t.txs.values() if x.get("role") in ("meter", "air")
        )
        reading_msgs = sum(
            int(x.get("messages", 0)) for x in t.txs.values() if x.get("role") in ("meter", "air")
        )
        mqtt = self._mqtt_report()
        attacks = self.attack_outcomes()
        every_attack_caught = all(a["caught"] for a in attacks.values() if a["fired"])
        ok = (
            not t.forged_accepted
            and not lost
            and every_attack_caught
            and not t.errors
            and t.commands_executed >= 1
            and len(t.sent) > 0
        )
        return {
            "ok": ok,
            "duration_s": round(time.time() - self.started, 1),
            "devices": len(self.devices),
            "messages": {
                "sent": len(t.sent),
                "readings_sent": len(readings),
                "delivered": {level: len(got) for level, got in t.delivered.items()},
                "lost": [list(k) for k in lost],
            },
            "latency_s": latency,
            "gas": {
                "transactions": len(t.txs),
                "total": gas,
                "per_message": gas / messages_in_txs if messages_in_txs else None,
                "per_reading": reading_gas / reading_msgs if reading_msgs else None,
                "paper_per_message": sum(paper) / len(paper) if paper else None,
            },
            "attacks": attacks,
            "forged_accepted": len(t.forged_accepted),
            "problems": {
                k: len(self._problems(k))
                for k in sorted({str(p.get("problem")) for p in t.problems})
            },
            "commands": {
                "sent": t.commands_sent,
                "executed": t.commands_executed,
                "refused": t.commands_refused,
                "results_received": t.results_received,
            },
            "errors": t.errors,
            "mqtt": mqtt,
        }

    def _mqtt_report(self) -> dict[str, Any]:
        """The MQTT devices' part of the report (their readings are in ``messages`` too)."""
        if self.mqtt is None:
            return {"devices": 0, "skipped": self.mqtt_skipped or "--mqtt-devices 0"}
        t = self.tally
        mine = [k for k, v in t.sent.items() if v.get("role") == "mqtt"]
        gas, records = self.mqtt.gas(self.chain) if self.chain is not None else (0, 0)
        return {
            "devices": len(self.mqtt.devices),
            "interpreter": "micropython -X heapsize=64K",
            "sent": len(mine),
            "delivered": {lv: sum(1 for k in mine if k in got) for lv, got in t.delivered.items()},
            "gateway_gas": gas,
            "gas_per_record": gas / records if records else None,
        }

    def render(self, rep: dict[str, Any]) -> str:
        m, g, c = rep["messages"], rep["gas"], rep["commands"]
        lines = ["", "=== lightpost demo report ==="]
        lines.append(
            f"messages: sent {m['sent']} (readings {m['readings_sent']}); delivered verified "
            f"(controller, gateway receivers): included {m['delivered']['included']}, final "
            f"{m['delivered']['final']}, complete {m['delivered']['complete']}; lost "
            f"{len(m['lost'])}"
        )
        for level, lat in rep["latency_s"].items():
            if lat["p50_s"] is not None:
                lines.append(
                    f"latency send -> {level:<8} p50 {lat['p50_s']:.1f}s  p95 {lat['p95_s']:.1f}s"
                )
        if g["per_message"] is not None:
            per_reading = g["per_reading"] or 0.0
            lines.append(
                f"gas: {g['total']:,} in {g['transactions']} txs = {g['per_message']:,.0f} per "
                f"message, {per_reading:,.0f} per reading vs the paper's "
                f"{g['paper_per_message'] or 0:,.0f} (one tx per reading)"
            )
        q = rep["mqtt"]
        if q["devices"]:
            d = q["delivered"]
            per = f"{q['gas_per_record']:,.0f}" if q["gas_per_record"] is not None else "-"
            lines.append(
                f"MQTT devices ({q['devices']}, {q['interpreter']}, no ETH, no RPC endpoint): "
                f"sent {q['sent']}, verified through the gateway: included {d['included']}, "
                f"final {d['final']}, complete {d['complete']}; gateway gas {per} per record"
            )
        else:
            lines.append(f"MQTT devices: none ({q['skipped']})")
        for name, a in rep["attacks"].items():
            state = (
                "not triggered" if not a["fired"] else ("caught" if a["caught"] else "NOT CAUGHT")
            )
            lines.append(f"attack '{name}': {state}")
        lines.append(f"forged messages accepted: {rep['forged_accepted']}")
        lines.append(
            f"commands: sent {c['sent']}, executed {c['executed']}, refused {c['refused']}, "
            f"signed results received {c['results_received']}"
        )
        for err in rep["errors"]:
            lines.append(f"error: {err}")
        lines.append(
            "RESULT: every integrity property held" if rep["ok"] else "RESULT: FAILED -- see above"
        )
        return "\n".join(lines)

    # -- the run ---------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        self.setup()
        self.start_devices()
        if getattr(self.args, "console", False):
            self.open_console()
        last_view = 0.0
        deadline = self.started + self.args.duration
        while time.time() < deadline:
            self.collect()
            if time.time() - last_view >= LIVE_LINE_EVERY_S and not self.args.json:
                self._say(self.view())
                last_view = time.time()
            time.sleep(COLLECT_INTERVAL_S)
            self._check_processes()
        (self.dir / "stop").write_text("stop producing\n")
        self._say("run over: no new readings; waiting for the last ones to become final")
        drain_until = time.time() + DRAIN_TIMEOUT_S
        while time.time() < drain_until:
            self.collect()
            # an MQTT device may sign one last reading as it sees the stop file: wait for it to
            # exit (after its receipts) so that reading is counted, delivered or lost
            mqtt_done = self.mqtt is None or self.mqtt.running() == 0
            # a valve that executed a command owes its signed result: wait for it too
            results_done = self.tally.results_received >= self.tally.commands_executed
            if (
                mqtt_done
                and results_done
                and all(k in self.tally.delivered["complete"] for k in self.tally.sent)
            ):
                break
            time.sleep(COLLECT_INTERVAL_S)
            self._check_processes()
        self.collect(verify_now=True)
        self._say(self.view())
        return self.report()

    def _check_processes(self) -> None:
        for msg in self.mqtt.failed() if self.mqtt is not None else []:
            if msg not in self.tally.errors:
                self.tally.errors.append(msg)
                self._say(f"!! {msg}")
        for dev in self.devices:
            if dev.proc and dev.proc.poll() is not None and dev.proc.returncode != 0:
                msg = f"{dev.name} exited with status {dev.proc.returncode}"
                if msg not in self.tally.errors:
                    self.tally.errors.append(msg)
                    self._say(f"!! {msg} (see {self.dir / 'events' / (dev.name + '.log')})")


def run_demo(args: argparse.Namespace, out: Any = sys.stdout) -> dict[str, Any]:
    """Run the demo; return the report (also printed unless --json)."""
    temp = args.dir is None
    directory = Path(tempfile.mkdtemp(prefix="lightpost-demo-")) if temp else Path(args.dir)
    directory.mkdir(parents=True, exist_ok=True)
    demo = Demo(args, directory, out)
    try:
        report = demo.run()
    finally:
        demo.teardown()
        if temp and os.environ.get("LIGHTPOST_KEEP_DEMO") != "1":
            shutil.rmtree(directory, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True), file=out)
    else:
        print(demo.render(report), file=out)
    return report


def cmd_demo(args: argparse.Namespace) -> int:
    report = run_demo(args)
    return 0 if report["ok"] else 1
