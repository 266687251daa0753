"""`make bench` (beacon): the sync-committee light client beside the quorum-only node.

1. time per update verified -- the REAL mainnet beacon-API answers in ../shared/vectors/beacon
   (Capella era, periods 862-867, 512 signers): an optimistic and a finality update with the
   period's keys decompressed once (lightpost_beacon.bls.load_bls once), the same from bytes (a
   fresh verifier each time: 512 keys decompressed and subgroup-checked), and each committee
   hand-over update. Medians over ROUNDS.
2. bytes downloaded per day -- each route's answer size is the real mainnet answer as a beacon
   node sends it (compact JSON; the vector files are pretty-printed), times (a) how often the
   chain makes a new one (mainnet: a slot every 12 s, finality once an epoch of 32 slots, a new
   committee once a period of 256 epochs, ~27.3 h) and (b) how often lightpost asks: every
   receiver poll (RECEIVE_INTERVAL_S) refreshes the light client, which asks every beacon
   endpoint for a finality and an optimistic update (lightpost_beacon.sources.sync), and for
   ``updates`` once a period. (b) is confirmed on the devnet: the running node's requests per
   route are counted by a forwarder in front of the devnet's beacon API.
3. state on disk -- lightpost_beacon.sources.encode_state with one and with two committees.
4. node RSS -- a one-device devnet with its beacon API (``devnet_up(beacon=True)``, anvil, 1 s
   blocks); ``lightpost node --config DEVICE.toml --receive final`` runs once with ``trust =
   "beacon"`` and once with the same config on ``trust = "quorum"`` (its own data directory),
   sends NODE_WAVES x NODE_WAVE_MESSAGES 100-byte readings and receives them at ``final``; then
   follows for FOLLOW_S more; VmRSS and VmHWM from /proc/PID/status (bench_footprint's method,
   here both from this checkout's venv).

Nothing is a timing assert. With ``--write-docs`` the report replaces the BENCH-BEACON section
of docs/benchmarks.md; ``--no-node`` skips the devnet (3 s instead of ~3 min).

Usage: python tools/bench_beacon.py [--write-docs] [--json] [--no-node]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import progress, reading
from reports import cpu_model, write_section

from lightpost_beacon import containers as beacon
from lightpost_beacon import lightclient
from lightpost_beacon.bls import load_bls
from lightpost_beacon.sources import encode_state

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared/vectors/beacon/official-minimal-and-mainnet/ethereum/testdata"
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- BEGIN GENERATED BENCH-BEACON -->", "<!-- END GENERATED BENCH-BEACON -->"

ROUNDS = 20
"""Verifications per median with the keys decompressed (a few ms each)."""
FROM_BYTES_ROUNDS = 5
"""Verifications per median from bytes (~0.25 s each)."""
NODE_WAVES = 3
NODE_WAVE_MESSAGES = 10
"""Readings each node sends (and receives at ``final``) before it only follows."""
NODE_TIMEOUT_S = 180.0
"""Longest a node may take to receive its readings at ``final`` (beacon: 16 slots behind)."""
FOLLOW_S = 60.0
"""How long each node then only follows; its beacon requests in that window give the rate."""
NODE_CHANNEL = "devnet"
"""The channel every devnet device may post on (and trusts itself on)."""
DAY_S = 86_400

ROUTES = ("bootstrap", "updates", "finality_update", "optimistic_update")


def _load(name: str) -> Any:
    return json.loads((DATA / f"{name}.json").read_bytes())


def _compact(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")).encode())


def _median_ms(run: Any, rounds: int = ROUNDS) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def answer_sizes() -> dict[str, dict[str, int]]:
    """Route -> {"wire": compact JSON bytes of one answer, "file": the vector file's bytes};
    ``updates``: one update of the period answer (six in the file)."""
    updates = _load("updates")
    out = {}
    for route, name in zip(ROUTES, ("bootstrap", "updates", "finality", "optimistic"), strict=True):
        raw = (DATA / f"{name}.json").stat().st_size
        if route == "updates":
            out[route] = {"wire": round(_compact(updates) / len(updates)), "file": raw // 6}
        else:
            out[route] = {"wire": _compact(_load(name)), "file": raw}
    return out


def head_asks_per_day(
    config: beacon.ChainConfig, *, poll_s: float, finality_after_slots: int = 0
) -> dict[str, int]:
    """Head updates the light client asks of one endpoint in a day: one sync a receiver poll,
    at most one a slot (sources.BeaconLightClient.sync), the routes of lightclient.head_routes;
    finality is taken to advance ``finality_after_slots`` into each epoch (0: at its first
    slot, as on a healthy mainnet). Pure: a simulation of the client's own rule."""
    counts = dict.fromkeys(lightclient.HEAD_ROUTES, 0)
    slot_s, per_epoch = config.seconds_per_slot, config.slots_per_epoch
    seen: int | None = None
    last: int | None = None
    for poll in range(int(DAY_S / poll_s)):
        slot = int(poll * poll_s // slot_s)
        if last is not None and slot <= last:
            continue
        last = slot
        routes = lightclient.head_routes(config, current_slot=slot, finality_seen=seen)
        for route in routes:
            counts[route] += 1
        if "finality_update" in routes and slot % per_epoch >= finality_after_slots:
            seen = slot
    return counts


def daily_bytes(
    sizes: dict[str, int],
    *,
    config: beacon.ChainConfig,
    poll_s: float,
    endpoints: int = 1,
) -> dict[str, dict[str, float]]:
    """Per route: answers a day and bytes a day (``sizes``: bytes of one answer) at the chain's
    cadence ("chain": each new answer fetched once) and as lightpost asks ("lightpost": the head
    updates of :func:`head_asks_per_day` from each of ``endpoints``; updates once a period; the
    bootstrap once, then the state on disk). Pure: the table's arithmetic, tested."""
    slot_s = config.seconds_per_slot
    per_day = {
        "optimistic_update": DAY_S / slot_s,
        "finality_update": DAY_S / (slot_s * config.slots_per_epoch),
        "updates": DAY_S / (slot_s * config.slots_per_epoch * config.epochs_per_period),
        "bootstrap": 0.0,
    }
    heads = head_asks_per_day(config, poll_s=poll_s)
    asked = {
        "optimistic_update": float(endpoints * heads["optimistic_update"]),
        "finality_update": float(endpoints * heads["finality_update"]),
        "updates": per_day["updates"],
        "bootstrap": 0.0,
    }
    out: dict[str, dict[str, float]] = {}
    for route in ROUTES:
        out[route] = {
            "chain_answers": per_day[route],
            "chain_bytes": per_day[route] * sizes[route],
            "lightpost_answers": asked[route],
            "lightpost_bytes": asked[route] * sizes[route],
        }
    out["total"] = {
        key: sum(out[r][key] for r in ROUTES)
        for key in ("chain_answers", "chain_bytes", "lightpost_answers", "lightpost_bytes")
    }
    return out


def measure_cpu() -> dict[str, Any]:
    """Time per update verified and the state's size, on the real mainnet answers."""
    config = beacon.MAINNET
    data = beacon.bootstrap_from_json(_load("bootstrap"), config)
    updates = beacon.updates_from_json(_load("updates"), config)
    (finality,) = beacon.updates_from_json(_load("finality"), config)
    (optimistic,) = beacon.updates_from_json(_load("optimistic"), config)
    now = optimistic.signature_slot
    bls = load_bls()
    store = lightclient.bootstrap(
        config, data.header.beacon.root(), data, current_slot=data.header.beacon.slot
    )
    one_committee = len(encode_state(store))
    handover_ms: list[float] = []
    for update in updates:

        def handover(before: Any = store, update: Any = update) -> None:
            lightclient.process_update(config, before, update, current_slot=now, bls=bls)

        handover_ms.append(_median_ms(handover, FROM_BYTES_ROUNDS))
        store = lightclient.process_update(config, store, update, current_slot=now, bls=bls)

    def verify(update: beacon.LightClientUpdate, verifier: Any) -> None:
        lightclient.process_update(config, store, update, current_slot=now, bls=verifier)

    signers = [u.participants for u in (optimistic, finality)]
    progress("beacon: time per update verified (real mainnet answers)")
    return {
        "signers": signers,
        "committee_size": config.committee_size,
        "updates_ms": {
            "optimistic update, keys decompressed": _median_ms(lambda: verify(optimistic, bls)),
            "finality update, keys decompressed": _median_ms(lambda: verify(finality, bls)),
            "optimistic update, keys from bytes": _median_ms(
                lambda: verify(optimistic, load_bls()), FROM_BYTES_ROUNDS
            ),
            "finality update, keys from bytes": _median_ms(
                lambda: verify(finality, load_bls()), FROM_BYTES_ROUNDS
            ),
        },
        "handover_ms": [min(handover_ms), max(handover_ms)],
        "state_bytes": [one_committee, len(encode_state(store))],
    }


# --- the devnet: node RSS and the beacon requests it makes ---


class CountingForwarder:
    """A loopback HTTP forwarder in front of a beacon API, counting requests and answer bytes
    per route."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.counts: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def snapshot(self) -> dict[str, list[int]]:
        with self._lock:
            return {route: list(v) for route, v in self.counts.items()}

    def start(self) -> str:
        fwd = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                try:
                    with urllib.request.urlopen(fwd.upstream + self.path, timeout=30) as resp:
                        status, body = resp.status, resp.read()
                except urllib.error.HTTPError as exc:
                    status, body = exc.code, exc.read()
                route = self.path.split("?")[0].rsplit("/light_client/", 1)[-1].split("/")[0]
                with fwd._lock:
                    count = fwd.counts.setdefault(route, [0, 0])
                    count[0] += 1
                    count[1] += len(body)
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def _proc_status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _variant(base: Path, trust: str, beacon_url: str) -> Path:
    """A copy of the device config beside it (the same data directory: the outbox's message
    sequence and the receiver's cursor carry on); ``quorum``: without the trust line and the
    [beacon] table; ``beacon``: its beacon endpoint is ``beacon_url``."""
    text = base.read_text()
    if trust == "quorum":
        text = text.replace('trust = "beacon"\n', "").split("\n[beacon]\n")[0] + "\n"
    else:
        text = re.sub(r'(?m)^endpoints = \["http://127\.0\.0\.1:\d+"\]\n(?=trusted_root)',
                      f'endpoints = ["{beacon_url}"]\n', text)  # fmt: skip
    path = base.with_name(f"{base.stem}-{trust}.toml")
    path.write_text(text)
    return path


def _run_node(
    config_path: Path, log: Path, expected: int, first_seq: int, fwd: CountingForwarder
) -> dict[str, Any]:
    """Start `lightpost node --receive final`, send the readings, wait until ``expected``
    messages were delivered at ``final``, follow FOLLOW_S; memory and beacon requests."""
    from lightpost.core.envelope import ContentType
    from lightpost.node.config import load_config
    from lightpost.node.runtime import open_store
    from lightpost.node.sender import enqueue_message
    from lightpost_operator.anvil import stop_process

    config = load_config(config_path)
    delivered = [0]
    with open(log, "ab") as err:
        node = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lightpost.cli.main",
                "node",
                "--config",
                str(config_path),
                "--receive",
                "final",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )

    def count() -> None:
        assert node.stdout is not None
        for line in node.stdout:
            if '"type": "message"' in line:
                delivered[0] += 1

    threading.Thread(target=count, daemon=True).start()
    try:
        start = time.monotonic()
        with open_store(config) as store:
            for i in range(NODE_WAVES * NODE_WAVE_MESSAGES):
                enqueue_message(
                    store,
                    payload=reading(first_seq + i),
                    channel=NODE_CHANNEL,
                    recipient=None,
                    content_type=ContentType.JSON,
                    now=time.time(),
                )
        while delivered[0] < expected:
            if node.poll() is not None:
                raise SystemExit(f"lightpost node exited with {node.returncode}; see {log}")
            if time.monotonic() - start > NODE_TIMEOUT_S:
                raise SystemExit(f"node: {delivered[0]} of {expected} delivered; see {log}")
            time.sleep(0.2)
        to_final = time.monotonic() - start
        before = fwd.snapshot()
        time.sleep(FOLLOW_S)
        after = fwd.snapshot()
        rss_kb = _proc_status_kb(node.pid, "VmRSS")
        hwm_kb = _proc_status_kb(node.pid, "VmHWM")
    finally:
        stop_process(node, grace_s=15)
    requests = {
        route: (after[route][0] - before.get(route, [0, 0])[0]) / FOLLOW_S
        for route in after
        if after[route][0] > before.get(route, [0, 0])[0]
    }
    return {
        "messages": NODE_WAVES * NODE_WAVE_MESSAGES,
        "delivered": delivered[0],
        "to_final_s": to_final,
        "rss_mb": rss_kb * 1024 / 1e6,
        "peak_mb": hwm_kb * 1024 / 1e6,
        "beacon_requests_per_s": requests,
    }


def measure_nodes() -> dict[str, Any]:
    """The receiver node on trust = beacon, then on trust = quorum, on one devnet."""
    from lightpost_operator.anvil import free_port
    from lightpost_operator.devnet import devnet_down, devnet_up

    with tempfile.TemporaryDirectory(prefix="lightpost-bench-beacon-") as name:
        tmp = Path(name)
        progress("beacon: devnet up (anvil, 1 s blocks, its beacon light-client API)")
        desc = devnet_up(tmp / "devnet", port=free_port(), block_time=1.0, devices=1, beacon=True)
        fwd = CountingForwarder("")
        try:
            base = Path(desc["devices"][0]["config"])
            found = re.search(r'\[beacon\]\nendpoints = \["([^"]+)"\]', base.read_text())
            assert found is not None, "devnet_up(beacon=True) wrote no [beacon] table"
            fwd.upstream = found.group(1)
            url = fwd.start()
            out: dict[str, Any] = {}
            for trust in ("beacon", "quorum"):
                progress(f"beacon: `lightpost node --receive final` on trust = {trust}")
                sent = NODE_WAVES * NODE_WAVE_MESSAGES * len(out)
                path = _variant(base, trust, url)
                expected = NODE_WAVES * NODE_WAVE_MESSAGES  # the cursor carries on
                out[trust] = _run_node(path, tmp / "node.log", expected, sent, fwd)
            return out
        finally:
            fwd.stop()
            devnet_down(tmp / "devnet")


# --- the report ---


def _kb(n: float) -> str:
    return f"{n / 1000:,.1f} KB"


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


def render(result: dict[str, Any]) -> str:
    """The generated section (markdown) from :func:`main`'s result."""
    cpu, sizes = result["cpu"], result["sizes"]
    poll = result["poll_s"]
    lines = [
        f"Measured {result['date']} on {result['cpu_model']}; real mainnet beacon-API answers "
        f"({cpu['signers'][0]} and {cpu['signers'][1]} of {cpu['committee_size']} signers). "
        "Generated by `tools/bench_beacon.py` (`make bench`).",
        "",
        "### Time per update verified (medians)",
        "",
        "| update | time |",
        "|---|---:|",
    ]
    for name, ms in cpu["updates_ms"].items():
        lines.append(f"| {name} | {ms:.1f} ms |")
    lo, hi = cpu["handover_ms"]
    one, two = cpu["state_bytes"]
    lines += [
        f"| committee hand-over update (6 periods), keys decompressed | {lo:.1f}-{hi:.1f} ms |",
        "",
        f"State on disk: {one:,} bytes with one committee known, {two:,} with two (constant: "
        "the finalized header and the committees, never chain data).",
        "",
        "### Bytes downloaded per day at mainnet cadence (one beacon endpoint)",
        "",
        "Answer sizes are the real mainnet answers as compact JSON (the vector files, "
        "pretty-printed, are larger: in brackets). *Chain*: each new answer fetched once "
        "(a slot every 12 s, finality once an epoch of 32 slots = 6.4 min, a new committee "
        "once a period of 8,192 slots = 27.3 h). *lightpost*: what the light client asks: one "
        f"sync a receiver poll (`RECEIVE_INTERVAL_S` = {poll:g} s) but at most one a slot, each "
        "asking every beacon endpoint for an optimistic update and, until finality is seen in "
        "the epoch, a finality update (`lightclient.head_routes`; finality taken to move at an "
        "epoch's first slot); `updates` once a period; the bootstrap once (then the state on "
        "disk). A chain that stops finalizing costs a finality update a slot.",
        "",
        "| route | one answer | new per day (chain) | bytes/day (chain) | asked per day "
        "(lightpost) | bytes/day (lightpost) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    daily = result["daily"]
    for route in ROUTES:
        d = daily[route]
        lines.append(
            f"| `{route}` | {_kb(sizes[route]['wire'])} ({_kb(sizes[route]['file'])}) | "
            f"{d['chain_answers']:,.2f} | {_mb(d['chain_bytes'])} | "
            f"{d['lightpost_answers']:,.0f} | {_mb(d['lightpost_bytes'])} |"
        )
    t = daily["total"]
    lines += [
        f"| total | | | {_mb(t['chain_bytes'])} | | {_mb(t['lightpost_bytes'])} |",
        "",
        f"lightpost downloads {t['lightpost_bytes'] / t['chain_bytes']:.2f}x what the chain "
        "makes (one sync a slot; until 2026-11-29 every 1 s poll asked both head routes: 633 MB "
        "a day). Each further beacon endpoint adds the finality and optimistic rows again; a "
        "node's receivers and sender share one light client. The quorum-only node downloads no "
        "beacon data.",
    ]
    nodes = result.get("nodes")
    if nodes:
        lines += [
            "",
            "### The running node, beacon trust beside quorum trust",
            "",
            "`lightpost node --config DEVICE.toml --receive final` on a one-device devnet "
            "(anvil, 1 s blocks, the devnet's beacon light-client API: minimal preset, 32 "
            f"signers), from this checkout's venv: it sends {NODE_WAVES * NODE_WAVE_MESSAGES} "
            f"100-byte readings, receives them at `final`, then follows for {FOLLOW_S:.0f} s; "
            "VmRSS then, and the peak (VmHWM), from /proc/PID/status. Beacon requests: counted "
            "by a forwarder in front of the beacon API during the follow window.",
            "",
            "| trust | readings sent -> final | time to final | VmRSS | peak (VmHWM) | "
            "beacon requests/s in the follow window |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for trust, r in nodes.items():
            rate = ", ".join(
                f"{route} {n:.2f}" for route, n in sorted(r["beacon_requests_per_s"].items())
            )
            lines.append(
                f"| {trust} | {r['messages']} | {r['to_final_s']:.1f} s | {r['rss_mb']:.1f} MB | "
                f"{r['peak_mb']:.1f} MB | {rate or 'none'} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write-docs", action="store_true", help="rewrite docs/benchmarks.md")
    parser.add_argument("--json", action="store_true", help="print the raw result as JSON")
    parser.add_argument("--no-node", action="store_true", help="skip the devnet node runs")
    args = parser.parse_args(argv)
    from lightpost.node.services import RECEIVE_INTERVAL_S

    sizes = answer_sizes()
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "cpu_model": cpu_model(),
        "cpu": measure_cpu(),
        "sizes": sizes,
        "poll_s": RECEIVE_INTERVAL_S,
        "daily": daily_bytes(
            {r: s["wire"] for r, s in sizes.items()},
            config=beacon.MAINNET,
            poll_s=RECEIVE_INTERVAL_S,
        ),
    }
    if not args.no_node:
        result["nodes"] = measure_nodes()
    text = render(result)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(text)
    if args.write_docs:
        write_section(DOC, text, BEGIN, END)
        progress(f"beacon: wrote the generated section of {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
