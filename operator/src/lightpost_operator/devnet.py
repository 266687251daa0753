"""`lightpost devnet up|down|status`: a local chain ready for devices.

`up` starts anvil (or Ganache: ``node="ganache"``) in the background (pid file in DIR), deploys
the inbox at its protocol address (:mod:`lightpost_operator.inbox`),
creates N device identities (encrypted keystores), funds them and writes
``DIR/devnet.json`` plus one ready-to-use config per device (``DIR/devices/<name>.toml``).

Password scheme (devnet only): each device gets a fresh random password (24 bytes of
os.urandom, URL-safe base64) stored beside its keystore in ``<name>.password`` with
mode 0600, and its config points at it with ``password_file``. Keystores use geth's
light scrypt parameters (n=4096, p=6) so that set-up stays fast. On a real device, use
the standard parameters and provide the password via LIGHTPOST_PASSWORD from a secret
store instead of a file.

The funder is anvil's first well-known dev account (public test mnemonic); it exists
only on the devnet.

``up --gateway`` (issue 14) adds devices without an operating system: a Mosquitto broker on a
free loopback port (its config, persistence and log in ``DIR/mosquitto``), the anchoring contract
at its protocol address, a gateway (``lightpost gateway run`` in the background, its funded key
and config in ``DIR/gateway``, its SQLite store there too) and N MQTT device identities: each a
JSON file ``DIR/mqtt/<name>.json`` (mode 0600: it holds the device's secret, as the device's
flash would) authorized for the gateway (``DIR/gateway/devices.txt``), plus ``DIR/mqtt/device.py``
that runs such a device under MicroPython or CPython. `down` stops gateway, broker and anvil.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lightpost.adapters.rpc import HttpEndpoint
from lightpost.core.inbox import inbox_execution_gas
from lightpost.core.keys import PrivateKey, to_checksum_address
from lightpost.errors import ChainProcessError, ConfigError, LightpostError
from lightpost.node.chain import Chain
from lightpost_operator.anvil import (
    LOOPBACK,
    AnvilProcess,
    free_port,
    port_is_free,
    remove_state_dir,
)
from lightpost_operator.ganache import GanacheProcess
from lightpost_operator.inbox import deploy_inbox
from lightpost_operator.keywrite import LIGHT_SCRYPT_N, LIGHT_SCRYPT_P, encrypt_key, generate_key
from lightpost_operator.mosquitto import mosquitto_binary
from lightpost_operator.wallet import send_operator_tx

__all__ = [
    "DEVICE_FUNDING_WEI",
    "DEVNET_FILE",
    "DEVNET_FUNDER_KEY",
    "GATEWAY_INTERVAL_S",
    "MQTT_CADENCE_S",
    "devnet_down",
    "devnet_status",
    "devnet_up",
    "write_device",
]

DEVNET_FILE = "devnet.json"
"""Name of the devnet description inside DIR."""

PID_FILE = "anvil.pid"
"""Pid of the background anvil inside DIR."""

ANVIL_HOME = "anvil-home"
"""anvil's HOME inside DIR: it keeps historical states there (GBs on a long devnet);
`down` deletes it."""

DEVNET_FUNDER_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
"""anvil's dev account #0 (public test mnemonic): funds devices and deploys contracts."""

DEVICE_FUNDING_WEI = 100 * 10**18
"""Each device starts with 100 ETH of devnet money."""

DEVNET_CHANNEL = "devnet"
"""A channel every devnet device trusts all devnet devices on."""

Customize = Callable[[str, dict[str, str]], dict[str, Any]]
"""Per-device overrides of :func:`write_device` arguments (see :func:`devnet_up`)."""

PASSWORD_BYTES = 24
"""Random bytes behind each devnet keystore password."""

NODES: dict[str, type[AnvilProcess]] = {"anvil": AnvilProcess, "ganache": GanacheProcess}
"""The local chains a devnet can run on (anvil: the default; Ganache: a second, independent VM)."""

STOP_TIMEOUT_S = 10.0
"""How long `down` waits for anvil to exit after SIGTERM before SIGKILL."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ChainProcessError(
            f"no devnet in {path.parent}: run `lightpost devnet up --dir {path.parent}`"
        ) from None
    except (OSError, ValueError) as exc:
        raise ChainProcessError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ChainProcessError(f"{path} is not a devnet description")
    return data


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # also when an older, world-readable file is rewritten
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid TOML basic string


def write_device(
    devices_dir: Path,
    name: str,
    *,
    key: PrivateKey,
    chain_id: int,
    endpoints: list[str],
    quorum: int,
    inbox: bytes,
    trusted: dict[str, list[str]],
    extra: str = "",
    trust: str = "quorum",
    batch_bytes: int = 4096,
    max_delay_s: float = 1.0,
    randbytes: Callable[[int], bytes] = os.urandom,
) -> Path:
    """Write ``<name>.keystore.json``, ``<name>.password`` and ``<name>.toml``."""
    devices_dir.mkdir(parents=True, exist_ok=True)
    password = base64.urlsafe_b64encode(randbytes(PASSWORD_BYTES)).decode()
    keystore = encrypt_key(
        key, password, randbytes=randbytes, scrypt_n=LIGHT_SCRYPT_N, scrypt_p=LIGHT_SCRYPT_P
    )
    _write_private(devices_dir / f"{name}.password", password + "\n")
    _write_private(devices_dir / f"{name}.keystore.json", json.dumps(keystore, indent=2))
    lines = [
        f"# lightpost device config for {name} (address {key.checksum_address})",
        f"name = {_toml_str(name)}",
        f"chain_id = {chain_id}",
        f"endpoints = [{', '.join(_toml_str(e) for e in endpoints)}]",
        f"quorum = {quorum}",
        *([f"trust = {_toml_str(trust)}"] if trust != "quorum" else []),
        f"keystore = {_toml_str(name + '.keystore.json')}",
        f"password_file = {_toml_str(name + '.password')}",
        f"data_dir = {_toml_str('../data/' + name)}",
        'mode = "channel"',
        f"inbox = {_toml_str(to_checksum_address(inbox))}",
        "",
        "[fees]",
        'policy = "eip1559"',
        "max_fee_gwei = 100",
        "priority_fee_gwei = 1",
        "",
        "[send]",
        f"batch_bytes = {batch_bytes}",
        f"max_delay_s = {max_delay_s}",
    ]
    for channel, addresses in trusted.items():
        lines += [
            "",
            f"[channels.{_toml_str(channel)}]",
            f"trusted = [{', '.join(_toml_str(a) for a in addresses)}]",
        ]
    path = devices_dir / f"{name}.toml"
    # 0600 like the keystore: endpoint URLs may carry a provider's API key
    _write_private(path, "\n".join(lines) + "\n" + extra)
    return path


def devnet_up(
    directory: Path,
    *,
    port: int = 8545,
    block_time: float = 1.0,
    devices: int = 2,
    names: list[str] | None = None,
    customize: Customize | None = None,
    log: Callable[[str], None] = lambda _m: None,
    node: str = "anvil",
    beacon: bool = False,
    gateway: bool = False,
    mqtt_devices: int = 2,
) -> dict[str, Any]:
    """Start a devnet in ``directory`` on ``node`` (see NODES); return the devnet description
    (also written).

    ``customize(name, addresses)`` may override :func:`write_device` arguments per
    device (endpoints, quorum, trusted, extra TOML); ``addresses`` maps every device
    name to its checksum address. ``gateway``: also broker, anchoring contract, gateway and
    ``mqtt_devices`` MQTT device identities (the module's docstring).
    """
    if devices < 1:
        raise ConfigError("--devices must be at least 1")
    if gateway and mqtt_devices < 1:
        raise ConfigError("--mqtt-devices must be at least 1")
    if gateway and mosquitto_binary() is None:
        raise ConfigError("--gateway needs mosquitto: `make setup` or `apt-get install mosquitto`")
    if node not in NODES:
        raise ConfigError(f"--node must be one of {', '.join(NODES)}")
    if beacon and node != "anvil":
        raise ConfigError("--beacon needs --node anvil")
    names = names or [f"device-{i + 1}" for i in range(devices)]
    directory = directory.resolve()
    desc_path = directory / DEVNET_FILE
    if desc_path.exists():
        old = _read_json(desc_path)
        if _pid_alive(int(old.get("pid", 0)) or -1):
            raise ChainProcessError(
                f"a devnet is already up in {directory}: `lightpost devnet down --dir {directory}`"
            )
    if not port_is_free(port):
        raise ChainProcessError(
            f"port {port} is busy: stop what uses it or choose another with --port"
        )
    directory.mkdir(parents=True, exist_ok=True)
    extra: dict[str, Any] = {"accounts": (DEVNET_FUNDER_KEY,)} if node == "ganache" else {}
    anvil = NODES[node](
        port=port,
        block_time=block_time or None,
        log_path=directory / f"{node}.log",
        state_dir=directory / ANVIL_HOME,
        **extra,
    )
    anvil.start(detach=True)
    (directory / PID_FILE).write_text(f"{anvil.pid}\n")
    try:
        if beacon:
            customize = _with_beacon(directory, anvil, customize, log)
        desc = _provision(directory, anvil, names, block_time, customize, log)
        if gateway:
            desc["gateway"] = _with_gateway(directory, anvil, mqtt_devices, log)
            (directory / DEVNET_FILE).write_text(json.dumps(desc, indent=2) + "\n")
        return desc
    except BaseException:
        _stop_gateway(directory)
        _stop_pid(directory / BEACON_PID_FILE)
        anvil.stop()
        (directory / PID_FILE).unlink(missing_ok=True)
        remove_state_dir(directory / ANVIL_HOME)
        raise


BEACON_PID_FILE = "beacon.pid"
"""Pid of the background beacon light-client API (``up --beacon``) inside DIR."""


def _with_beacon(
    directory: Path, anvil: AnvilProcess, customize: Customize | None, log: Callable[[str], None]
) -> Customize:
    """Start the devnet's beacon API (lightpost_operator.beacon_server) in the background; every
    device config gets ``trust = "beacon"`` and a [beacon] table (its URL, the root of block 1)."""
    from lightpost_operator.beacon_server import BeaconDevnet

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lightpost_operator.beacon_server", anvil.url, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    (directory / BEACON_PID_FILE).write_text(f"{proc.pid}\n")
    log(f"beacon light-client API on port {port}")
    tables: list[str] = []

    def add(name: str, addresses: dict[str, str]) -> dict[str, Any]:
        if not tables:  # the inbox is deployed by now: block 1 exists
            local = BeaconDevnet(anvil.url)
            tables.append(
                f'\n[beacon]\nendpoints = ["http://{LOOPBACK}:{port}"]\n'
                f'trusted_root = "0x{local.root_of(1).hex()}"\nnetwork = "devnet"\n'
                f'genesis_time = {local.config.genesis_time}\nmax_age = "7d"\n'
            )
        options = customize(name, addresses) if customize is not None else {}
        options["extra"] = options.get("extra", "") + tables[0]
        options["trust"] = "beacon"
        return options

    return add


GATEWAY_DIR = "gateway"
"""The gateway's key, config, authorized devices, SQLite store, pid and log inside DIR."""

MOSQUITTO_DIR = "mosquitto"
"""The broker's config, persistence, pid and log inside DIR."""

MQTT_DIR = "mqtt"
"""The MQTT devices' identities (``<name>.json``), flash (``state/<name>``) and device.py."""

PID_NAME = "pid"
"""The pid file's name inside GATEWAY_DIR and MOSQUITTO_DIR."""

GATEWAY_INTERVAL_S = 5.0
"""The devnet gateway cuts a batch at least this often: a devnet shows anchoring within
seconds (a production gateway batches per minute: BATCH_INTERVAL_S)."""

MQTT_CADENCE_S = 5
"""Seconds between readings each devnet MQTT device declares in its birth (and device.py keeps)."""


def _with_gateway(
    directory: Path, anvil: AnvilProcess, count: int, log: Callable[[str], None]
) -> dict[str, Any]:
    """Broker, anchoring contract, funded gateway key and config, MQTT device identities, and the
    gateway process; returns the devnet description's ``gateway`` entry."""
    from lightpost_operator.gateway_cmd import deploy_anchor
    from lightpost_operator.mosquitto import Mosquitto

    broker = Mosquitto(directory / MOSQUITTO_DIR).start(detach=True)
    assert broker.pid is not None
    (directory / MOSQUITTO_DIR / PID_NAME).write_text(f"{broker.pid}\n")
    log(f"mosquitto on port {broker.port}")
    gw_dir = directory / GATEWAY_DIR
    chain = Chain([HttpEndpoint(anvil.url, "rpc#0")], quorum=1)
    try:
        chain_id = chain.chain_id()
        funder = PrivateKey.from_hex(DEVNET_FUNDER_KEY)
        anchor, _, nonce = deploy_anchor(chain, chain_id, funder, log)
        gw_key = generate_key(os.urandom)
        _, receipt = send_operator_tx(
            chain, chain_id, funder, nonce=nonce, to=gw_key.address, value=DEVICE_FUNDING_WEI
        )
        assert receipt is not None
        inbox = bytes.fromhex(_read_json(directory / DEVNET_FILE)["inbox"][2:])
        config = write_device(
            gw_dir,
            "gateway",
            key=gw_key,
            chain_id=chain_id,
            endpoints=[anvil.url],
            quorum=1,
            inbox=inbox,
            trusted={},
        )
    finally:
        chain.close()
    mqtt_dir = directory / MQTT_DIR
    (mqtt_dir / "state").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(__file__).with_name("mqtt_device.py"), mqtt_dir / "device.py")
    devices = []
    for i in range(count):
        name = f"mqtt-{i + 1}"
        key = generate_key(os.urandom)
        identity = {
            "name": name,
            "secret": key.secret_bytes().hex(),
            "chain_id": chain_id,
            "anchor": anchor.hex(),
            "host": LOOPBACK,
            "port": broker.port,
            "state_dir": str(mqtt_dir / "state" / name),
            "cadence_s": MQTT_CADENCE_S,
        }
        path = mqtt_dir / f"{name}.json"
        _write_private(path, json.dumps(identity, indent=2) + "\n")
        devices.append({"name": name, "address": key.checksum_address, "config": str(path)})
    authorized = gw_dir / "devices.txt"
    authorized.write_text("".join(d["address"] + "\n" for d in devices))
    db = gw_dir / "gateway.sqlite"
    with (gw_dir / "gateway.log").open("ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lightpost.cli.main",
                "gateway",
                "run",
                "--config",
                str(config),
                "--broker",
                f"{LOOPBACK}:{broker.port}",
                "--db",
                str(db),
                "--devices",
                str(authorized),
                "--interval",
                str(GATEWAY_INTERVAL_S),
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    (gw_dir / PID_NAME).write_text(f"{proc.pid}\n")
    _wait_subscribed(proc, gw_dir / "gateway.log")
    log(f"gateway {gw_key.checksum_address} (pid {proc.pid}), {count} MQTT devices")
    return {
        "address": gw_key.checksum_address,
        "anchor": to_checksum_address(anchor),
        "config": str(config),
        "db": str(db),
        "pid": proc.pid,
        "broker": f"{LOOPBACK}:{broker.port}",
        "broker_pid": broker.pid,
        "interval_s": GATEWAY_INTERVAL_S,
        "device_script": str(mqtt_dir / "device.py"),
        "mqtt_devices": devices,
    }


GATEWAY_START_TIMEOUT_S = 30.0
"""How long `up` waits for the gateway's subscription (a record published before it exists
reaches no gateway: the broker keeps QoS 1 messages only for existing subscriptions)."""

SUBSCRIBED = "subscribed to "
"""The gateway's log line once its shared subscription is in place (gateway_cmd)."""


def _wait_subscribed(proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + GATEWAY_START_TIMEOUT_S
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace") if log_path.exists() else ""
        if SUBSCRIBED in text:
            return
        if proc.poll() is not None:
            tail = " ".join(text.strip().splitlines()[-1:])
            raise ChainProcessError(f"the gateway exited with status {proc.returncode}: {tail}")
        time.sleep(0.1)
    raise ChainProcessError(f"the gateway did not subscribe within {GATEWAY_START_TIMEOUT_S:.0f}s")


def _stop_gateway(directory: Path) -> bool:
    """Stop the gateway, then the broker (the gateway's SIGTERM handler finishes its step)."""
    stopped = _stop_pid(directory / GATEWAY_DIR / PID_NAME)
    return _stop_pid(directory / MOSQUITTO_DIR / PID_NAME) or stopped


def device_commands(entry: dict[str, Any], directory: Path) -> list[str]:
    """How to run the first MQTT device of a devnet, under CPython and under MicroPython."""
    script = entry["device_script"]
    first = entry["mqtt_devices"][0]["config"]
    bundle = directory / MQTT_DIR / "bundle"
    return [
        f"{sys.executable} {script} {first}",
        f"python tools/device_bundle.py {bundle} && MICROPYPATH={bundle} "
        f"micropython -X heapsize=64K {script} {first}",
    ]


def _stop_pid(path: Path) -> bool:
    """SIGTERM (then SIGKILL) the process whose pid ``path`` holds; remove it."""
    try:
        pid = int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return False
    alive = _pid_alive(pid)
    if alive:
        os.kill(pid, signal.SIGTERM)
        if not _gone_within(pid, STOP_TIMEOUT_S):
            os.kill(pid, signal.SIGKILL)
            _gone_within(pid, STOP_TIMEOUT_S)
    path.unlink(missing_ok=True)
    return alive


def _provision(
    directory: Path,
    anvil: AnvilProcess,
    names: list[str],
    block_time: float,
    customize: Customize | None,
    log: Callable[[str], None],
) -> dict[str, Any]:
    chain = Chain([HttpEndpoint(anvil.url, "rpc#0")], quorum=1)
    try:
        chain_id = chain.chain_id()
        funder = PrivateKey.from_hex(DEVNET_FUNDER_KEY)
        nonce = chain.nonce(funder.address, "pending")
        inbox, _, nonce = deploy_inbox(chain, chain_id, funder, nonce=nonce, log=log)
        keys = {name: generate_key(os.urandom) for name in names}
        log(f"funding {len(keys)} devices")
        pending = []
        for key in keys.values():
            signed, _ = send_operator_tx(
                chain,
                chain_id,
                funder,
                nonce=nonce,
                to=key.address,
                value=DEVICE_FUNDING_WEI,
                wait=False,
            )
            pending.append(signed)
            nonce += 1
        for signed in pending:
            chain.wait_receipt(signed.hash, timeout=60)
        addresses = [k.checksum_address for k in keys.values()]
        endpoints = [anvil.url]
        devices_dir = directory / "devices"
        device_entries = []
        for name, key in keys.items():
            options: dict[str, Any] = {
                "endpoints": endpoints,
                "quorum": 1,
                "trusted": {DEVNET_CHANNEL: addresses},
            }
            if customize is not None:
                by_name = {n: k.checksum_address for n, k in keys.items()}
                options.update(customize(name, by_name))
            path = write_device(
                devices_dir, name, key=key, chain_id=chain_id, inbox=inbox, **options
            )
            device_entries.append(
                {"name": name, "address": key.checksum_address, "config": str(path)}
            )
        desc = {
            "node": anvil.name,
            "chain_id": chain_id,
            "rpc_url": anvil.url,
            "port": anvil.port,
            "pid": anvil.pid,
            "block_time": block_time,
            "inbox": to_checksum_address(inbox),
            "inbox_execution_gas_per_post": inbox_execution_gas(1024),
            "funder": funder.checksum_address,
            "channel": DEVNET_CHANNEL,
            "devices": device_entries,
            "started_at": int(time.time()),
        }
        (directory / DEVNET_FILE).write_text(json.dumps(desc, indent=2) + "\n")
        return desc
    finally:
        chain.close()


def devnet_down(directory: Path) -> bool:
    """Stop the devnet's anvil. Returns False when it was not running."""
    directory = directory.resolve()
    _stop_gateway(directory)
    _stop_pid(directory / BEACON_PID_FILE)
    pid_path = directory / PID_FILE
    if not pid_path.exists():
        _read_json(directory / DEVNET_FILE)  # says "no devnet in DIR" when there is none
        return False
    try:
        pid = int(pid_path.read_text().strip())
    except ValueError:
        raise ChainProcessError(f"{pid_path} does not hold a pid") from None
    stopped = False
    if _pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
        if not _gone_within(pid, STOP_TIMEOUT_S):
            os.kill(pid, signal.SIGKILL)
            _gone_within(pid, STOP_TIMEOUT_S)
        stopped = True
    pid_path.unlink(missing_ok=True)
    remove_state_dir(directory / ANVIL_HOME)  # anvil's on-disk chain history
    return stopped


def _gone_within(pid: int, seconds: float) -> bool:
    """Wait up to ``seconds`` for ``pid`` to exit (reaping it if it is our child)."""
    deadline = time.monotonic() + seconds
    while _pid_alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.05)
    return not _pid_alive(pid)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def devnet_status(directory: Path) -> dict[str, Any]:
    """Whether the devnet answers, its heads, and each device's balance."""
    directory = directory.resolve()
    desc = _read_json(directory / DEVNET_FILE)
    pid_path = directory / PID_FILE
    pid = int(pid_path.read_text().strip()) if pid_path.exists() else None
    status: dict[str, Any] = {
        "dir": str(directory),
        "up": False,
        "pid": pid,
        "rpc_url": desc.get("rpc_url"),
        "chain_id": desc.get("chain_id"),
        "inbox": desc.get("inbox"),
    }
    if pid is None or not _pid_alive(pid):
        status["reason"] = "anvil is not running"
        return status
    url = str(desc.get("rpc_url", ""))
    if not url.startswith(f"http://{LOOPBACK}:"):
        raise ChainProcessError(f"{directory / DEVNET_FILE}: rpc_url must be a loopback URL")
    chain = Chain([HttpEndpoint(url, "rpc#0", retries=0, timeout=3)], quorum=1)
    try:
        latest = chain.tag_height("latest")
        status.update(
            up=True,
            latest=latest,
            safe=chain.tag_height("safe"),
            finalized=chain.tag_height("finalized"),
            devices=[
                {**d, "balance_wei": chain.balance(bytes.fromhex(d["address"][2:]))}
                for d in desc.get("devices", [])
            ],
        )
    except LightpostError as exc:
        status["reason"] = f"anvil does not answer: {exc}"
    finally:
        chain.close()
    if "gateway" in desc:
        status["gateway"] = _gateway_status(directory, desc["gateway"])
    return status


def _gateway_status(directory: Path, entry: dict[str, Any]) -> dict[str, Any]:
    """Gateway and broker alive; per MQTT device, the records the gateway holds and anchored
    (read from its SQLite store, read-only)."""

    def alive(sub: str) -> bool:
        try:
            return _pid_alive(int((directory / sub / PID_NAME).read_text().strip()))
        except (OSError, ValueError):
            return False

    held: dict[str, tuple[int, int | None]] = {}
    with contextlib.suppress(sqlite3.Error):
        db = sqlite3.connect(f"file:{entry['db']}?mode=ro", uri=True)
        try:
            for device, records, anchored in db.execute(
                "SELECT r.device, COUNT(*), MAX(CASE WHEN b.block IS NOT NULL THEN r.seq END) "
                "FROM records r LEFT JOIN batches b ON r.batch = b.id GROUP BY r.device"
            ):
                held[bytes(device).hex()] = (records, anchored)
        finally:
            db.close()
    devices = []
    for d in entry.get("mqtt_devices", []):
        records, anchored = held.get(d["address"][2:].lower(), (0, None))
        devices.append({**d, "records": records, "anchored_seq": anchored})
    return {
        "address": entry.get("address"),
        "anchor": entry.get("anchor"),
        "broker": entry.get("broker"),
        "gateway_up": alive(GATEWAY_DIR),
        "broker_up": alive(MOSQUITTO_DIR),
        "mqtt_devices": devices,
    }
