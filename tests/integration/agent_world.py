"""A devnet with a controller, two agent-running valves and a stranger, for the agent's
integration tests (tests/integration/test_agent_anvil.py).

Everything travels on a real anvil: commands are signed into inbox posts by the
controller's (or the stranger's) :class:`~lightpost.node.sender.Sender`, the valve's
:class:`~lightpost.node.receiver.Receiver` proves them up to the policy's level, the
:class:`~lightpost_agent.agent.Agent` decides, and results go back through the valve's
outbox to the controller's receiver. anvil automines; finality is advanced explicitly
with ``anvil_mine`` (finalized = latest - 4), so every step is deterministic.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightpost.adapters.rpc import HttpEndpoint
from lightpost.adapters.store import Store
from lightpost.core.levels import Delivered, Level
from lightpost.core.outbox import State
from lightpost.core.verify import Problem
from lightpost.node.chain import Chain
from lightpost.node.config import DeviceConfig, load_config
from lightpost.node.receiver import Receiver
from lightpost.node.runtime import build_chain, load_key, make_sender, open_store
from lightpost.node.sender import Sender
from lightpost_agent.agent import read_audit
from lightpost_agent.command import (
    COMMANDS_CHANNEL,
    CONTENT_TYPE_COMMAND,
    CONTENT_TYPE_RESULT,
    RESULTS_CHANNEL,
    Command,
    CommandResult,
    Target,
    UpdateManifest,
    decode_result,
)
from lightpost_agent.service import (
    AgentService,
    build_agent,
    next_command_seq,
    with_command_channel,
)
from lightpost_operator.anvil import free_port
from lightpost_operator.devnet import devnet_down, devnet_up
from tests.integration.receive_chain import mine_blocks

__all__ = [
    "CRASH_VALVE",
    "FINALITY_BLOCKS",
    "REPO_ROOT",
    "VALVE",
    "VALVE_CLASS",
    "FromBlock",
    "NodeProcess",
    "Party",
    "ValveHarness",
    "World",
    "command",
    "node_process",
    "publish",
    "read_audit",
    "stop_node",
    "world",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
"""Subprocesses run here so that ``tests.node.agent_plugins`` is importable."""

FINALITY_BLOCKS = 5
"""Blocks mined to make the latest block final (anvil: finalized = latest - 4)."""

VALVE = "valve-1"
"""The valve with the built-in handlers (set/config/update)."""

CRASH_VALVE = "valve-2"
"""The valve whose only command is the blocking plugin (SIGKILL test)."""

VALVE_CLASS = "valve"
"""Device class of both valves."""

ACTUATOR = "valve"
"""The one actuator ``set`` may change on valve-1."""

STEP_TIMEOUT_S = 30.0
"""Longest wait for one in-process step (send, deliver) on a busy 2-core box."""


def _toml(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid TOML basic string


def _customize(images: Path) -> Callable[[str, dict[str, str]], dict[str, Any]]:
    def options(name: str, addresses: dict[str, str]) -> dict[str, Any]:
        controller = addresses["controller"]
        valves = [addresses[VALVE], addresses[CRASH_VALVE]]
        extra = ""
        if name == VALVE:
            extra = (
                f'\n[agent]\ndevice_class = {_toml(VALVE_CLASS)}\nmin_level = "final"\n'
                f"actuators = [{_toml(ACTUATOR)}]\n"
                'config_whitelist = ["report_interval_s"]\n'
                f"update_source = {_toml(str(images))}\n"
                f'\n[agent.controllers]\n{_toml(controller)} = ["set", "config", "update"]\n'
            )
        elif name == CRASH_VALVE:
            extra = (
                f"\n[agent]\ndevice_class = {_toml(VALVE_CLASS)}\n"
                f'\n[agent.controllers]\n{_toml(controller)} = ["block"]\n'
                '\n[agent.handlers]\nblock = "tests.node.agent_plugins:blocking_handler"\n'
            )
        return {
            "trusted": {RESULTS_CHANNEL: valves},
            "extra": extra,
            "max_delay_s": 0.0,
        }

    return options


def _step_until(sender: Sender, done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while not done():
        assert time.monotonic() < deadline, f"timed out: {what}; problems {sender.problems}"
        sender.step(time.time())
        time.sleep(0.05)


def _outbox_idle(store: Store) -> bool:
    counts = store.counts_by_state()
    return all(counts[s] == 0 for s in (State.QUEUED, State.HELD, State.SIGNED, State.BROADCAST))


@dataclass
class Party:
    """One device driven in-process: its config, store, chain client and sender."""

    name: str
    config: DeviceConfig
    store: Store
    chain: Chain
    sender: Sender
    closed: bool = False

    @property
    def address(self) -> bytes:
        return self.sender.address

    def post(
        self,
        payload: bytes,
        *,
        recipient: bytes | None,
        channel: str = COMMANDS_CHANNEL,
        content_type: int = CONTENT_TYPE_COMMAND,
    ) -> bytes:
        """Enqueue one message and drive the outbox until it is mined; its tx hash."""
        mid = self.sender.enqueue(
            payload=payload, channel=channel, recipient=recipient, content_type=content_type
        )

        def mined() -> bool:
            return self.store.message(mid).state in (State.INCLUDED, State.FINAL)

        _step_until(self.sender, mined, f"{self.name}'s message {mid} mined")
        tx = self.store.transaction(self.store.message(mid).tx_id or 0)
        return tx.mined_hash or tx.tx_hash

    def flush(self) -> None:
        """Drive the outbox until nothing waits to be mined."""
        _step_until(self.sender, lambda: _outbox_idle(self.store), f"{self.name}'s outbox idle")

    def next_seq(self) -> int:
        """The next command sequence number (the same counter `lightpost command` uses)."""
        return next_command_seq(self.store)

    def close(self) -> None:
        """Idempotent: the harness and the world may both close a party."""
        if self.closed:
            return
        self.closed = True
        self.sender.close()
        self.chain.close()
        self.store.close()


class FromBlock(Receiver):
    """A receiver whose first poll starts at ``since`` (a fresh subscription that must not
    rescan the whole history, e.g. a second agent subscription at another level)."""

    def __init__(self, config: DeviceConfig, *, since: int, **kw: Any) -> None:
        super().__init__(config, **kw)
        self._since: int | None = since

    def poll(
        self,
        level: Level = Level.FINAL,
        channel: str | None = None,
        sender: bytes | None = None,
        since: int | None = None,
    ) -> Iterator[Delivered | Problem]:
        first, self._since = self._since, None
        return super().poll(level, channel, sender, since if first is None else first)


class ValveHarness:
    """valve-1's agent as `lightpost node` wires it (build_agent + with_command_channel +
    AgentService at the policy's level), stepped by the test instead of the node loop.

    ``level`` / ``receiver`` override the subscription (a lower level, another trust
    list); ``results`` and ``problems`` collect what the service reported.
    """

    def __init__(
        self,
        world: World,
        name: str = VALVE,
        *,
        level: Level | None = None,
        receiver: Callable[[DeviceConfig, bytes], Receiver] | None = None,
    ) -> None:
        self.party = world.party(name)
        built = build_agent(self.party.config, self.party.sender, address=self.party.address)
        assert built is not None, f"{name} has no [agent]"
        self.agent, self.policy = built
        config = with_command_channel(self.party.config, self.policy)
        rx = (
            Receiver(config, me=self.party.address)
            if receiver is None
            else receiver(config, self.party.address)
        )
        self.results: list[tuple[Delivered, CommandResult]] = []
        self.problems: list[Problem] = []
        self.service = AgentService(
            self.agent,
            rx,
            level=self.policy.min_level if level is None else level,
            on_result=lambda d, r: self.results.append((d, r)),
            on_problem=self.problems.append,
            interval_s=0.0,
        )

    @property
    def state_dir(self) -> Path:
        return self.agent.state_dir

    def actuators(self) -> dict[str, str]:
        path = self.state_dir / "actuators.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def pump(self, done: Callable[[], bool], what: str) -> None:
        """Step the agent service until ``done()``; then send its results on chain."""
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while True:
            self.service.step(time.time())
            if done():
                break
            assert time.monotonic() < deadline, f"timed out: {what}; problems {self.problems}"
            time.sleep(0.1)
        self.party.flush()

    def pump_until_audited(self, controller: bytes, seq: int, decisions: int = 1) -> None:
        """Step until ``decisions`` new audit rows exist for (controller, seq)."""

        def seen() -> bool:
            rows = [
                e for e in self.agent.audit() if (e.controller, e.command_seq) == (controller, seq)
            ]
            return len(rows) >= decisions

        self.pump(seen, f"audit rows for seq {seq}")

    def audit_of(self, controller: bytes, seq: int) -> list[tuple[str, str]]:
        """(decision, reason) of every audit row of (controller, seq), oldest first."""
        return [
            (e.decision, e.reason)
            for e in self.agent.audit()
            if (e.controller, e.command_seq) == (controller, seq)
        ]

    def close(self) -> None:
        self.service.close()
        self.party.close()


@dataclass
class World:
    """The devnet of one test module and helpers over it."""

    directory: Path
    desc: dict[str, Any]
    images: Path
    _parties: list[Party] = field(default_factory=list)
    _results: Receiver | None = None
    received: list[tuple[Delivered, CommandResult]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return str(self.desc["rpc_url"])

    def path(self, name: str) -> Path:
        return Path(next(d["config"] for d in self.desc["devices"] if d["name"] == name))

    def address(self, name: str) -> bytes:
        text = next(d["address"] for d in self.desc["devices"] if d["name"] == name)
        return bytes.fromhex(text[2:])

    def checksum(self, name: str) -> str:
        return str(next(d["address"] for d in self.desc["devices"] if d["name"] == name))

    def config(self, name: str) -> DeviceConfig:
        return load_config(self.path(name))

    def rpc(self, method: str, params: list[Any]) -> Any:
        return HttpEndpoint(self.url, "test", retries=0, timeout=60).call(method, params)

    def mine(self, blocks: int = FINALITY_BLOCKS) -> None:
        mine_blocks(HttpEndpoint(self.url, "test", retries=0, timeout=60), blocks)

    def head(self) -> tuple[int, int]:
        """(number, timestamp) of the latest block."""
        block = self.rpc("eth_getBlockByNumber", ["latest", False])
        return int(block["number"], 16), int(block["timestamp"], 16)

    @contextlib.contextmanager
    def miner(self, interval: float = 0.3) -> Iterator[None]:
        """Mine a block every ``interval`` s in the background (finality advances while a
        subprocess waits for it)."""
        stop = threading.Event()

        def run() -> None:
            while not stop.wait(interval):
                with contextlib.suppress(Exception):
                    self.mine(1)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=10)

    def party(self, name: str) -> Party:
        """``name`` driven in-process (closed by :meth:`close`)."""
        config = self.config(name)
        store = open_store(config)
        chain = build_chain(config)
        party = Party(
            name, config, store, chain, make_sender(config, load_key(config), store, chain)
        )
        self._parties.append(party)
        return party

    def results_for(self, controller: Party, seq: int, count: int = 1) -> list[CommandResult]:
        """Mine to finality and receive (at ``final``) the controller's results for ``seq``
        until ``count`` have arrived; all of them, in chain order."""
        if self._results is None:
            self._results = Receiver(self.config(controller.name), me=controller.address)
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while True:
            self.mine()
            for item in self._results.poll(Level.FINAL, RESULTS_CHANNEL):
                if isinstance(item, Delivered) and item.content_type == CONTENT_TYPE_RESULT:
                    self.received.append((item, decode_result(item.payload)))
            got = [
                r
                for d, r in self.received
                if r.command_seq == seq and r.controller == controller.address
            ]
            if len(got) >= count:
                return got
            assert time.monotonic() < deadline, f"no result for seq {seq}: {self.received}"
            time.sleep(0.1)

    def close(self) -> None:
        if self._results is not None:
            self._results.close()
        for party in self._parties:
            with contextlib.suppress(Exception):
                party.close()
        self._parties.clear()


@contextlib.contextmanager
def world(directory: Path, node: str = "anvil") -> Iterator[World]:
    """A devnet on ``node`` with controller, valve-1, valve-2 and stranger; always torn down."""
    images = directory / "images"
    images.mkdir(parents=True)
    net = directory / "net"
    desc = devnet_up(
        net,
        port=free_port(),
        block_time=0,
        names=["controller", VALVE, CRASH_VALVE, "stranger"],
        customize=_customize(images),
        node=node,
    )
    w = World(net, desc, images)
    try:
        yield w
    finally:
        w.close()
        devnet_down(net)


def command(
    name: str,
    *,
    target: bytes,
    seq: int,
    block_time: int,
    args: tuple[tuple[str, str], ...] = (),
    manifest: UpdateManifest | None = None,
    not_before: int | None = None,
    expiry: int | None = None,
) -> Command:
    """A command valid around ``block_time`` (the latest block's timestamp)."""
    return Command(
        name=name,
        args=args,
        target=Target(address=target),
        command_seq=seq,
        not_before=block_time - 60 if not_before is None else not_before,
        expiry=block_time + 600 if expiry is None else expiry,
        manifest=manifest,
    )


def publish(
    images: Path, image: bytes, version: tuple[int, ...], *, served: bytes | None = None
) -> UpdateManifest:
    """Put ``served`` (default: ``image``) at ``image``'s content address in the update
    source; the manifest describes ``image`` (different ``served`` bytes = tampered)."""
    (images / hashlib.sha256(image).hexdigest()).write_bytes(image if served is None else served)
    return UpdateManifest(
        digest=hashlib.sha256(image).digest(),
        size=len(image),
        version=version,
        device_class=VALVE_CLASS,
    )


# --- subprocesses ---------------------------------------------------------------------


@dataclass
class NodeProcess:
    """A running ``lightpost node`` and the stderr lines it printed so far."""

    proc: subprocess.Popen[str]
    lines: list[str]


def node_process(config_path: Path) -> NodeProcess:
    """Start ``lightpost node --config PATH``; return once it announced itself (key
    decrypted, store open, agent built, signal handlers installed)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "lightpost.cli.main", "node", "--config", str(config_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
    assert proc.stderr is not None
    lines: list[str] = []
    while True:
        line = proc.stderr.readline()
        if not line:
            proc.wait(timeout=10)
            raise AssertionError("node exited early:\n" + "".join(lines))
        lines.append(line)
        if "lightpost node" in line:
            break
    stream = proc.stderr

    def drain() -> None:
        for rest in stream:
            lines.append(rest)

    threading.Thread(target=drain, daemon=True).start()
    return NodeProcess(proc, lines)


def stop_node(node: NodeProcess, sig: int = signal.SIGTERM) -> int:
    """Signal the node and wait; its exit status (killed if it does not stop)."""
    if node.proc.poll() is None:
        node.proc.send_signal(sig)
    try:
        return node.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        node.proc.kill()
        node.proc.wait(timeout=10)
        raise
