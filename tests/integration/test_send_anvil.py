"""The device node's sending side against a real anvil devnet (issue #4's bar).

Every test counts messages FROM THE CHAIN (eth_getLogs of the inbox for this sender,
posts decoded, (channel, seq) collected): on chain exactly once, whatever happened.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from lightpost.adapters.rpc import HttpEndpoint
from lightpost.core.envelope import channel_id, decode_post
from lightpost.core.inbox import EVENT_TOPIC, INBOX_ADDRESS, decode_post_log
from lightpost.core.outbox import State
from lightpost.node.config import DeviceConfig, load_config
from lightpost.node.runtime import build_chain, load_key, make_sender, open_store
from lightpost.node.sender import Sender, enqueue_message
from lightpost_operator.anvil import free_port
from lightpost_operator.devnet import devnet_down, devnet_up
from tests.conftest import NODES
from tests.conftest import run_cli as cli
from tests.integration.receive_chain import mine_blocks

GWEI = 10**9


# --- helpers ------------------------------------------------------------------------------


@pytest.fixture
def devnet(tmp_path: Path) -> Iterator[dict[str, Any]]:
    desc = devnet_up(tmp_path / "net", port=free_port(), block_time=0, devices=2)
    try:
        yield desc
    finally:
        devnet_down(tmp_path / "net")


@pytest.fixture(params=NODES)
def any_devnet(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """A devnet on anvil, then on Ganache."""
    net = tmp_path / "net"
    desc = devnet_up(net, port=free_port(), block_time=0, devices=2, node=request.param)
    try:
        yield desc
    finally:
        devnet_down(net)


def rpc(url: str, method: str, params: list[Any]) -> Any:
    # anvil_mine of 1,000 blocks takes seconds on a busy 2-core box.
    return HttpEndpoint(url, "test", retries=0, timeout=120).call(method, params)


def device_config(desc: dict[str, Any], *, batch_bytes: int = 4096, delay: float = 0.0) -> Path:
    path = Path(desc["devices"][0]["config"])
    text = path.read_text()
    text = text.replace("batch_bytes = 4096", f"batch_bytes = {batch_bytes}")
    text = text.replace("max_delay_s = 1.0", f"max_delay_s = {delay}")
    path.write_text(text)
    return path


def on_chain(desc: dict[str, Any], config: DeviceConfig, channel: str) -> Counter[int]:
    """seq -> how many times a record of it is in an inbox post of ours on ``channel``."""
    sender = load_key(config).address
    logs = rpc(
        desc["rpc_url"],
        "eth_getLogs",
        [
            {
                "address": desc["inbox"],
                "fromBlock": "0x0",
                "toBlock": "latest",
                "topics": [
                    "0x" + EVENT_TOPIC.hex(),
                    "0x" + channel_id(channel).hex(),
                    "0x" + sender.rjust(32, b"\0").hex(),
                ],
            }
        ],
    )
    seqs: Counter[int] = Counter()
    for log in logs:
        post = decode_post_log(
            bytes.fromhex(log["address"][2:]),
            [bytes.fromhex(t[2:]) for t in log["topics"]],
            bytes.fromhex(log["data"][2:]),
        )
        seqs.update(r.seq for r in decode_post(post.calldata).records)
    return seqs


def enqueue_many(config: DeviceConfig, channel: str, count: int, size: int = 40) -> None:
    with open_store(config) as store:
        for i in range(count):
            enqueue_message(
                store,
                payload=random.Random(i).randbytes(size),
                channel=channel,
                recipient=None,
                content_type=0,
                now=time.time(),
            )


def in_process(config: DeviceConfig, **overrides: Any) -> tuple[Sender, Callable[[], None]]:
    store = open_store(config)
    chain = build_chain(config)
    sender = make_sender(config, load_key(config), store, chain, **overrides)

    def close() -> None:
        sender.close()
        chain.close()
        store.close()

    return sender, close


def step_until(sender: Sender, done: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out; problems: {sender.problems}"
        sender.step(time.time())
        time.sleep(0.05)


def counts(sender: Sender) -> dict[State, int]:
    return sender.store.counts_by_state()


def node_process(config_path: Path) -> subprocess.Popen[str]:
    """A `lightpost node` subprocess, returned once it announced itself (keys loaded,
    store open, signal handlers installed)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "lightpost.cli.main", "node", "--config", str(config_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "lightpost node" in line, line + proc.stderr.read()
    threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep draining
    return proc


def mined_count(config: DeviceConfig) -> int:
    with open_store(config) as store:
        c = store.counts_by_state()
    return c[State.INCLUDED] + c[State.FINAL]


# --- (a) crash at random points ---------------------------------------------------------


@pytest.mark.parametrize("seed", [4, 11])
def test_sigkill_at_random_points_ends_with_every_message_on_chain_once(
    devnet: dict[str, Any], seed: int
) -> None:
    path = device_config(devnet, batch_bytes=200)  # 2 messages per tx: 100 txs
    config = load_config(path)
    enqueue_many(config, "crash", 200)
    rng = random.Random(seed)
    kills = []
    for _ in range(4):
        proc = node_process(path)
        time.sleep(rng.uniform(0.05, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        kills.append(mined_count(config))
    proc = node_process(path)
    deadline = time.monotonic() + 90
    while mined_count(config) < 200:
        assert time.monotonic() < deadline, f"not all mined; kills at {kills}"
        assert proc.poll() is None, "the node died"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)  # clean stop
    assert proc.wait(timeout=15) == 0
    seqs = on_chain(devnet, config, "crash")
    assert sorted(seqs) == list(range(200))
    assert set(seqs.values()) == {1}, {s: n for s, n in seqs.items() if n != 1}
    print(f"\ncrash test: mined messages at each SIGKILL: {kills}")


# --- (b) stale, down and slow endpoints ------------------------------------------------


class _Proxy:
    """A loopback JSON-RPC proxy to anvil that lies about nonces, answers slowly, or
    answers "no receipt" with a receipt naming the real block ``receipts_in``."""

    def __init__(
        self,
        upstream: str,
        *,
        stale: int = 0,
        delay: float = 0.0,
        receipts_in: dict[str, Any] | None = None,
    ) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                time.sleep(outer.delay)
                req = urllib.request.Request(upstream, body, {"content-type": "application/json"})
                with urllib.request.urlopen(req, timeout=30) as resp:
                    answer = json.loads(resp.read())
                asked = json.loads(body)
                pairs = zip(
                    asked if isinstance(asked, list) else [asked],
                    answer if isinstance(answer, list) else [answer],
                    strict=False,
                )
                for q, a in pairs:
                    method = q.get("method")
                    if outer.stale and method == "eth_getTransactionCount" and "result" in a:
                        a["result"] = hex(max(0, int(a["result"], 16) - outer.stale))
                    block = outer.receipts_in
                    if block and method == "eth_getTransactionReceipt" and a.get("result") is None:
                        a["result"] = {
                            "transactionHash": q["params"][0],
                            "blockHash": block["hash"],
                            "blockNumber": block["number"],
                            "transactionIndex": "0x0",
                            "status": "0x1",
                        }
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.stale = stale
        self.delay = delay
        self.receipts_in = receipts_in
        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_stale_down_and_slow_endpoints_lose_and_duplicate_nothing(
    devnet: dict[str, Any],
) -> None:
    url = devnet["rpc_url"]
    stale = _Proxy(url, stale=2)
    slow = _Proxy(url, delay=2.0)
    down = f"http://127.0.0.1:{free_port()}"
    try:
        path = device_config(devnet, batch_bytes=1500)  # 2 transactions
        env = {
            "LIGHTPOST_ENDPOINTS": ",".join([url, stale.url, down, slow.url, url]),
            "LIGHTPOST_QUORUM": "3",
            "LIGHTPOST_DATA_DIR": str(path.parent / "data-endpoints"),
        }
        config = load_config(path, env={**os.environ, **env})
        # Some history first, so that a stale count is really wrong.
        enqueue_many(config, "endpoints", 30)
        sender, close = in_process(config)
        try:
            started = time.monotonic()
            step_until(sender, lambda: counts(sender)[State.INCLUDED] == 30, timeout=120)
            elapsed = time.monotonic() - started
            status = sender.status()
        finally:
            close()
        health = {e["label"]: e["reachable"] for e in status["endpoints"]}
        assert health == {
            "rpc#0": True,
            "rpc#1": True,
            "rpc#2": False,
            "rpc#3": True,
            "rpc#4": True,
        }
        assert status["nonce"]["answers"]["rpc#1"] != status["nonce"]["answers"]["rpc#0"]
        assert status["nonce"]["dissenters"] == ["rpc#1"] and status["healthy"]
        assert "nonce disagreement: rpc#1" in " ".join(status["warnings"])
        seqs = on_chain(devnet, config, "endpoints")
        assert sorted(seqs) == list(range(30)) and set(seqs.values()) == {1}
        print(f"\nendpoints test: 30 messages included in {elapsed:.1f} s")
    finally:
        stale.close()
        slow.close()


def test_a_lying_receipt_is_not_believed_and_a_dropped_tx_is_resent(
    devnet: dict[str, Any],
) -> None:
    """Issue 12, finding 2: one endpoint of three claims our transaction is in a real,
    agreed block that does not hold it, while the pool drops it. The sender does not
    mark it included, names the liar, re-sends it, and it lands once."""
    url = devnet["rpc_url"]
    real = rpc(url, "eth_getBlockByNumber", ["latest", False])
    liar = _Proxy(url, receipts_in={"hash": real["hash"], "number": real["number"]})
    try:
        path = device_config(devnet)
        env = {
            "LIGHTPOST_ENDPOINTS": ",".join([url, url, liar.url]),
            "LIGHTPOST_QUORUM": "2",
            "LIGHTPOST_DATA_DIR": str(path.parent / "data-liar"),
        }
        config = load_config(path, env={**os.environ, **env})
        sender, close = in_process(config, rebroadcast_interval_s=0.5, stuck_after_s=3600.0)
        try:
            rpc(url, "evm_setAutomine", [False])
            mid = sender.enqueue(payload=b"not lost", channel="liar", content_type=1)
            sender.step(time.time())
            tx = sender.store.transaction(sender.store.message(mid).tx_id or 0)
            assert tx.state is State.BROADCAST
            rpc(url, "anvil_dropTransaction", ["0x" + tx.tx_hash.hex()])
            assert rpc(url, "eth_getTransactionByHash", ["0x" + tx.tx_hash.hex()]) is None
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                sender.step(time.time())
                assert sender.store.message(mid).state is State.BROADCAST
                time.sleep(0.1)
            pooled = rpc(url, "eth_getTransactionByHash", ["0x" + tx.tx_hash.hex()])
            assert pooled is not None and pooled["blockNumber"] is None  # re-sent
            assert "do not include it" in sender.problems.get("proof rpc#2", "")
            assert not any(k in sender.problems for k in ("proof rpc#0", "proof rpc#1"))
            rpc(url, "evm_setAutomine", [True])
            rpc(url, "anvil_mine", ["0x1"])
            step_until(sender, lambda: counts(sender)[State.INCLUDED] == 1)
            landed = sender.store.transaction(tx.id)
            assert landed.included is not None and landed.included.hash != bytes.fromhex(
                real["hash"][2:]
            )
        finally:
            close()
    finally:
        liar.close()
    assert on_chain(devnet, config, "liar") == Counter({0: 1})


# --- (c) base fee spike ---------------------------------------------------------------------


def test_base_fee_above_the_cap_holds_messages_then_releases_them(
    devnet: dict[str, Any],
) -> None:
    url = devnet["rpc_url"]
    config = load_config(device_config(devnet))
    sender, close = in_process(config)
    try:
        rpc(url, "anvil_setNextBlockBaseFeePerGas", [hex(300 * GWEI)])  # cap is 100 gwei
        rpc(url, "anvil_mine", ["0x1"])
        for i in range(5):
            sender.enqueue(payload=f"reading {i}".encode(), channel="spike", content_type=1)
        sender.step(time.time())
        sender.step(time.time())
        assert counts(sender)[State.HELD] == 5
        status = sender.status()
        assert status["fees"]["above_cap"] is True
        assert "held" in status["verdict"] and not status["healthy"]
        assert on_chain(devnet, config, "spike") == Counter()
        rpc(url, "anvil_setNextBlockBaseFeePerGas", [hex(GWEI)])
        rpc(url, "anvil_mine", ["0x1"])
        step_until(sender, lambda: counts(sender)[State.INCLUDED] == 5)
    finally:
        close()
    seqs = on_chain(devnet, config, "spike")
    assert sorted(seqs) == list(range(5)) and set(seqs.values()) == {1}


# --- (d) reorg ------------------------------------------------------------------------------


def test_reorged_out_transaction_ends_on_the_canonical_chain_once(
    devnet: dict[str, Any],
) -> None:
    url = devnet["rpc_url"]
    config = load_config(device_config(devnet))
    sender, close = in_process(config, finality_depth=0)
    try:
        mid = sender.enqueue(payload=b"survives a reorg", channel="reorg", content_type=1)
        step_until(sender, lambda: counts(sender)[State.INCLUDED] == 1)
        tx = sender.store.transaction(sender.store.message(mid).tx_id or 0)
        assert tx.included is not None
        head = int(rpc(url, "eth_blockNumber", []), 16)
        rpc(url, "anvil_reorg", [head - tx.included.number + 1, []])
        assert rpc(url, "eth_getTransactionReceipt", ["0x" + tx.tx_hash.hex()]) is None
        step_until(sender, lambda: sender.store.transaction(tx.id).state is not State.INCLUDED)
        step_until(sender, lambda: counts(sender)[State.INCLUDED] == 1)
        again = sender.store.transaction(tx.id)
        assert again.included is not None and again.included.hash != tx.included.hash
        block = rpc(url, "eth_getBlockByNumber", [hex(again.included.number), False])
        assert block["hash"] == "0x" + again.included.hash.hex()
        rpc(url, "anvil_mine", ["0x8"])
        step_until(sender, lambda: counts(sender)[State.FINAL] == 1)
    finally:
        close()
    assert on_chain(devnet, config, "reorg") == Counter({0: 1})


# --- (e) no chain data stored -----------------------------------------------------------------


def _dir_size(directory: Path) -> int:
    for db in directory.glob("*.sqlite3"):
        with sqlite3.connect(db) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def test_data_directory_does_not_grow_with_the_chain(devnet: dict[str, Any]) -> None:
    url = devnet["rpc_url"]
    config = load_config(device_config(devnet))
    sender, close = in_process(config, prune_after_s=0.0)
    sizes = []
    try:
        for r in range(6):
            for i in range(3):
                sender.enqueue(payload=f"round {r} msg {i}".encode(), channel="long")
            step_until(sender, lambda: counts(sender)[State.INCLUDED] == 3)
            rpc(url, "anvil_mine", [hex(1000 if r else 10)])  # round 0 is the warm-up
            step_until(sender, lambda: sum(counts(sender).values()) == 0)  # final, pruned
            sizes.append(_dir_size(config.data_dir))
        head = int(rpc(url, "eth_blockNumber", []), 16)
    finally:
        close()
    assert head >= 5000
    assert max(sizes[1:]) <= sizes[1], sizes  # after warm-up: flat over 5,000 blocks
    seqs = on_chain(devnet, config, "long")
    assert sorted(seqs) == list(range(18)) and set(seqs.values()) == {1}
    print(f"\ndata dir bytes after warm-up, then after each 1,000 blocks: {sizes} (head {head})")
    # anvil's own history of those blocks sits in the devnet dir until `down` removes it
    net = config.data_dir.resolve().parents[1]  # DIR/data/<device> -> DIR
    assert _dir_size(net / "anvil-home") > 0
    assert devnet_down(net) is True
    assert not (net / "anvil-home").exists()


# --- (f) CLI ------------------------------------------------------------------------------------


def test_cli_send_status_and_one_line_errors(any_devnet: dict[str, Any], tmp_path: Path) -> None:
    devnet = any_devnet
    path = device_config(devnet)
    sent = cli("send", "--config", str(path), "--channel", "cli", "--data", "hi", "--json")
    assert sent.returncode == 0, sent.stderr
    view = json.loads(sent.stdout)
    assert view["state"] == "included" and view["reached"] is True
    receipt = rpc(devnet["rpc_url"], "eth_getTransactionReceipt", [view["tx_hash"]])
    assert receipt["blockHash"] == view["block_hash"]
    text = cli("send", "--config", str(path), "--channel", "cli", "--data", "again")
    assert text.returncode == 0 and "included, tx 0x" in text.stdout

    status = cli("status", "--config", str(path))
    assert status.returncode == 0, status.stdout
    assert "verdict:    healthy" in status.stdout and "rpc#0 ok" in status.stdout
    status_json = json.loads(cli("status", "--config", str(path), "--json").stdout)
    outbox = status_json["outbox"]
    assert status_json["healthy"] is True and outbox["included"] + outbox["final"] == 2
    # anvil: finalized = latest - 4, both still included; Ganache: finalized = latest
    assert outbox["included"] == (2 if devnet["node"] == "anvil" else outbox["included"])
    # the dev venv has the `fast` extra; a device install without it says pure-python
    assert status_json["keccak"] == "safe-pysha3" and "keccak safe-pysha3)" in status.stdout

    missing = cli("send", "--config", str(tmp_path / "nope.toml"), "--channel", "x", "--data", "y")
    wrong = cli(
        "send",
        "--config",
        str(path),
        "--channel",
        "cli",
        "--data",
        "z",
        env={"LIGHTPOST_PASSWORD": "wrong"},
    )
    for bad in (missing, wrong):
        assert bad.returncode == 1
        assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("lightpost: error:")
        assert "Traceback" not in bad.stderr
    assert "password" in wrong.stderr
    assert on_chain(devnet, load_config(path), "cli") == Counter({0: 1, 1: 1})

    down = path.with_name("down.toml")
    down.write_text(path.read_text().replace(devnet["rpc_url"], f"http://127.0.0.1:{free_port()}"))
    unhealthy = cli("status", "--config", str(down))
    assert unhealthy.returncode == 1 and "verdict:    unhealthy: " in unhealthy.stdout
    assert "endpoints reachable" in unhealthy.stdout

    node = cli("node", "--config", str(path), "--duration", "1")
    assert node.returncode == 0, node.stderr

    # the devnet put the inbox at its protocol address, on anvil and on Ganache alike
    assert devnet["inbox"].lower() == "0x" + INBOX_ADDRESS.hex()
    again = cli("inbox", "deploy", "--config", str(path))
    assert again.returncode == 0 and "already at " + devnet["inbox"] in again.stdout  # idempotent
    verify = cli("inbox", "verify", "--latest", "--config", str(path), "--json")
    assert verify.returncode == 0, verify.stderr
    assert json.loads(verify.stdout)["ok"] is True


def test_direct_and_channel_messages_reach_final(any_devnet: dict[str, Any]) -> None:
    """Device 1 sends on a channel (to the inbox), device 2 in direct mode (to device 1)."""
    devices = any_devnet["devices"]
    channel_cfg = load_config(device_config(any_devnet))
    direct_path = Path(devices[1]["config"])
    direct_path.write_text(direct_path.read_text().replace('mode = "channel"', 'mode = "direct"'))
    direct_cfg = load_config(direct_path)
    peer = bytes.fromhex(devices[0]["address"][2:])
    for config, channel in ((channel_cfg, "devnet"), (direct_cfg, None)):
        with open_store(config) as store:
            for i in range(2):
                enqueue_message(
                    store,
                    payload=b"m%d" % i,
                    channel=channel,
                    recipient=None if channel else peer,
                    content_type=0,
                    now=time.time(),
                )
    senders = [in_process(channel_cfg), in_process(direct_cfg)]
    try:
        for sender, _ in senders:
            step_until(
                sender, lambda s=sender: counts(s)[State.INCLUDED] + counts(s)[State.FINAL] > 0
            )
        mine_blocks(HttpEndpoint(any_devnet["rpc_url"], "test"), 5)  # anvil: finalized = latest - 4
        for sender, _ in senders:
            step_until(sender, lambda s=sender: sum(counts(s).values()) == counts(s)[State.FINAL])
    finally:
        for _, close in senders:
            close()
    assert on_chain(any_devnet, channel_cfg, "devnet") == Counter({0: 1, 1: 1})
    url = any_devnet["rpc_url"]
    direct = [
        tx
        for n in range(int(rpc(url, "eth_blockNumber", []), 16) + 1)
        for tx in rpc(url, "eth_getBlockByNumber", [hex(n), True])["transactions"]
        if tx["to"] == "0x" + peer.hex() and tx["input"] != "0x"
    ]
    assert len(direct) == 1  # both direct messages in one post, to the peer's own address
    seqs = Counter(r.seq for r in decode_post(bytes.fromhex(direct[0]["input"][2:])).records)
    assert seqs == Counter({0: 1, 1: 1})
