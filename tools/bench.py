"""`make bench`, first half: footprint, throughput and gas cost, each a side-by-side ratio.

* footprint (tools/bench_footprint.py): installed size of lightpost, lightpost[fast],
  web3.py 8.0.0 and eth-account 0.14.0 in fresh venvs; import time and RSS after import;
  RSS of a running `lightpost node` on a devnet.
* throughput (tools/bench_cpu.py): sign + encode, recover, recover + verify inclusion,
  lightpost (both keccak backends) vs eth-account 0.14.0 on the same inputs.
* gas (here): real receipts from a fresh anvil 1.7.1 (EIP-7623 active) for 100-byte JSON
  readings, 100 B to 100 KB per transaction, direct and channel mode, with and without
  the envelope's compression, against the EIP-7623 floor and against the paper's one
  transaction per reading with a fixed 210,000 gas limit.

Nothing here is a timing assert. With --write-docs the tables replace the generated
section of docs/benchmarks.md (between the BEGIN/END GENERATED BENCH markers); that needs
every part. Progress goes to stderr, one line per step.

Usage: python tools/bench.py [--write-docs] [--json] [--only footprint|throughput|gas ...]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_common import DEV_KEY, READING_BYTES, RECIPIENT, progress, reading
from reports import anvil_version, cpu_model, write_section

from lightpost.adapters.rpc import HttpEndpoint
from lightpost.core import envelope
from lightpost.core.gas import TX_SIZE_OVERHEAD_BYTES, TXPOOL_MAX_TX_BYTES, floor_gas
from lightpost.core.inbox import HEADER_BYTES, inbox_calldata, inbox_execution_gas
from lightpost.core.keys import PrivateKey
from lightpost.core.tx import LegacyTx, sign_transaction
from lightpost.node.chain import Chain, parse_quantity
from lightpost_operator.anvil import AnvilProcess, free_port
from lightpost_operator.contracts import inbox_initcode
from lightpost_operator.wallet import send_operator_tx

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- BEGIN GENERATED BENCH -->", "<!-- END GENERATED BENCH -->"
PARTS = ("footprint", "throughput", "gas")

PAPER_GAS_PRICE = 30 * 10**9
"""The paper's fixed gas price (30 gwei), used for its one-tx-per-reading baseline."""

PAPER_GAS_LIMIT = 210_000
"""The paper's fixed gas limit per transaction."""

PAYLOAD_SIZES = (100, 1_000, 2_000, 10_000, 100_000)
"""Application bytes per transaction (multiples of the 100-byte reading)."""

MAX_POST_BYTES = TXPOOL_MAX_TX_BYTES - TX_SIZE_OVERHEAD_BYTES
"""Largest post a transaction can carry through a geth/reth txpool (128 KiB less the
transaction's own fields)."""

CHANNEL = envelope.channel_id("district-7")
"""The channel of the channel-mode posts."""

MB = 1_000_000
ETH = 10**18

GOAL_INSTALLED_MB = 4.0
GOAL_RSS_MB = 30.0
GOAL_IMPORT_S = 0.15
GOAL_SPEEDUP = 5.0
GOAL_FLOOR_RATIO = 1.05
GOAL_FLOOR_MIN_CALLDATA = 2_000
GOAL_GAS_PER_READING = 2_500
"""Issue 8's goals: installed size, node RSS, import time, throughput vs eth-account,
gas vs the EIP-7623 floor at >= 2 KB per channel-mode transaction, gas per batched
100-byte reading."""


# --- gas ------------------------------------------------------------------------------


def _messages(shape: str, count: int, first_seq: int) -> list[envelope.Message]:
    """``count`` readings as ``count`` messages, or as one JSON-array message."""
    readings = [reading(first_seq + i) for i in range(count)]
    if shape == "one message":
        readings = [b"[" + b",".join(readings) + b"]"]
    return [
        envelope.Message(
            seq=first_seq + i,
            timestamp=1_700_000_000_000 + first_seq + i,
            content_type=envelope.ContentType.JSON,
            payload=payload,
        )
        for i, payload in enumerate(readings)
    ]


def build_post(messages: list[envelope.Message], *, direct: bool, compress: bool) -> envelope.Post:
    """One post with every message: packed as the sender packs them (the envelope chooses
    compression per message, then tries the whole post as version 2), or with every
    record left uncompressed in a version-1 post."""
    channel = envelope.DIRECT_CHANNEL if direct else CHANNEL
    recipient = RECIPIENT if direct else None
    if compress:
        posts = envelope.pack_messages(channel, recipient, messages, max_post_bytes=MAX_POST_BYTES)
        if len(posts) != 1:
            raise AssertionError("a benchmark post must fit one transaction")
        return posts[0]
    records = tuple(
        envelope.Record(
            seq=m.seq, timestamp=m.timestamp, content_type=m.content_type, payload=m.payload
        )
        for m in messages
    )
    return envelope.Post(channel=channel, recipient=recipient, records=records)


def gas_cases() -> list[dict[str, Any]]:
    """Every measured configuration: payload size x shape x mode x compression."""
    cases = []
    for size in PAYLOAD_SIZES:
        readings = size // READING_BYTES
        shapes = ["messages"] + (["one message"] if readings > 1 else [])
        for shape in shapes:
            for mode in ("direct", "channel"):
                for compress in (False, True):
                    cases.append(
                        {
                            "size": size,
                            "readings": readings,
                            "shape": shape,
                            "mode": mode,
                            "compress": compress,
                        }
                    )
    return cases


class _Sender:
    """The benchmark's device on a fresh anvil: deploys the inbox, then sends."""

    def __init__(self, url: str) -> None:
        self.key = PrivateKey.from_hex(DEV_KEY)
        self.chain = Chain([HttpEndpoint(url, "rpc#0")], quorum=1)
        self.chain_id = self.chain.chain_id()
        self.nonce = self.chain.nonce(self.key.address)
        receipt = self.send(None, inbox_initcode(), 200_000)
        self.inbox = bytes.fromhex(str(receipt["contractAddress"])[2:])

    def send(self, to: bytes | None, data: bytes, execution_gas: int) -> dict[str, Any]:
        _, receipt = send_operator_tx(
            self.chain,
            self.chain_id,
            self.key,
            nonce=self.nonce,
            to=to,
            data=data,
            execution_gas=execution_gas,
        )
        assert receipt is not None
        self.nonce += 1
        return dict(receipt)

    def paper(self, data: bytes) -> int:
        """The paper's transaction: legacy, 30 gwei, 210,000 gas, the raw reading."""
        tx = LegacyTx(
            chain_id=self.chain_id,
            nonce=self.nonce,
            gas_price=PAPER_GAS_PRICE,
            gas=PAPER_GAS_LIMIT,
            to=RECIPIENT,
            value=0,
            data=data,
        )
        signed = sign_transaction(tx, self.key)
        self.chain.broadcast(signed.raw, signed.hash)
        receipt = self.chain.wait_receipt(signed.hash, timeout=30)
        self.nonce += 1
        return parse_quantity(receipt["gasUsed"], "gasUsed")

    def post(self, post: envelope.Post, *, direct: bool, first: bool = False) -> tuple[int, bytes]:
        """Send ``post`` as lightpost's sender does; (gas used, calldata)."""
        encoded = envelope.encode_post(post)
        if direct:
            receipt = self.send(RECIPIENT, encoded, 0)
            return parse_quantity(receipt["gasUsed"], "gasUsed"), encoded
        data = inbox_calldata(post.channel, post.recipient, encoded[HEADER_BYTES:])
        receipt = self.send(self.inbox, data, inbox_execution_gas(len(data), first_post=first))
        return parse_quantity(receipt["gasUsed"], "gasUsed"), data


def measure_gas() -> dict[str, Any]:
    progress("gas: fresh anvil, deploy the inbox")
    with AnvilProcess(port=free_port()) as anvil:
        device = _Sender(anvil.url)
        paper_gas = device.paper(reading(0))
        first_post = build_post(_messages("messages", 1, 0), direct=False, compress=True)
        first_gas, first_data = device.post(first_post, direct=False, first=True)
        rows = []
        seq = 1
        cases = gas_cases()
        progress(f"gas: {len(cases)} transactions, 100 B to 100 KB each")
        for case in cases:
            messages = _messages(case["shape"], case["readings"], seq)
            seq += case["readings"]
            payload = b"".join(m.payload for m in messages)
            post = build_post(messages, direct=case["mode"] == "direct", compress=case["compress"])
            gas, data = device.post(post, direct=case["mode"] == "direct")
            rows.append(
                case
                | {
                    "payload_bytes": len(payload),
                    "calldata_bytes": len(data),
                    "gas": gas,
                    "floor": floor_gas(data),
                    "payload_floor": floor_gas(payload),
                    "compressed_records": sum(r.compressed for r in post.records),
                    "deflated_post": post.deflated,
                }
            )
        device.chain.close()
    return {
        "paper_gas": paper_gas,
        "paper_floor": floor_gas(reading(0)),
        "first_post_gas": first_gas,
        "first_post_floor": floor_gas(first_data),
        "rows": rows,
    }


# --- machine ----------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "anvil": anvil_version(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"),
        "load": os.getloadavg()[0],
    }


# --- rendering --------------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def _mb(n: float) -> str:
    return f"{n / MB:.2f} MB"


def _core_total(sizes: dict[str, int]) -> int:
    return sum(sizes.values())


def goals(results: dict[str, Any]) -> list[str]:
    """One line per goal of issue 8: met, or missed with the measured number."""
    fp, cpu, gas = results["footprint"], results["throughput"], results["gas"]
    lines = []
    core = _core_total(fp["installed"]["lightpost"])
    fast = _core_total(fp["installed"]["lightpost[fast]"])
    budget = GOAL_INSTALLED_MB * MB
    lines.append(
        f"- Installed size <= {GOAL_INSTALLED_MB:.0f} MB: {_verdict(core <= budget)} -- "
        f"`pip install lightpost` (the device core) {_mb(core)}. `lightpost[fast]` "
        f"{_mb(fast)} is not budgeted; it would {'meet' if fast <= budget else 'miss'} the goal."
    )
    rss = fp["node_rss"]
    lines.append(
        f"- Node RSS <= {GOAL_RSS_MB:.0f} MB: "
        + "; ".join(
            f"{name} {_verdict(r['rss_mb'] <= GOAL_RSS_MB)} ({r['rss_mb']:.1f} MB)"
            for name, r in rss.items()
        )
        + "."
    )
    imp = fp["imports"]
    lines.append(
        f"- Import time <= {GOAL_IMPORT_S} s (the device node's modules): "
        + "; ".join(
            f"{name} {_verdict(imp[name]['import_s'] <= GOAL_IMPORT_S)} "
            f"({imp[name]['import_s']:.3f} s; whole process {imp[name]['process_s']:.3f} s)"
            for name in ("lightpost", "lightpost[fast]")
        )
        + "."
    )
    for ref_side, ref_name in REFERENCES.items():
        ref = cpu["sides"][ref_side]["rates"]
        for side in ("lightpost-fast", "lightpost-pure"):
            rates = cpu["sides"][side]["rates"]
            ratios = {
                f"{op}, {size}": rates[size][op] / ref[size][op]
                for size in rates
                for op in rates[size]
            }
            worst = min(ratios, key=lambda k: ratios[k])
            best = max(ratios, key=lambda k: ratios[k])
            met = ratios[worst] >= GOAL_SPEEDUP
            lines.append(
                f"- Throughput >= {GOAL_SPEEDUP:.0f}x {ref_name}, {side} "
                f"({cpu['sides'][side]['backend']}): {_verdict(met)} -- from "
                f"{ratios[worst]:.2f}x ({worst}) to {ratios[best]:.2f}x ({best})."
            )
    channel = [
        r
        for r in gas["rows"]
        if r["mode"] == "channel" and r["calldata_bytes"] >= GOAL_FLOOR_MIN_CALLDATA
    ]
    worst_floor = max(channel, key=lambda r: r["gas"] / r["floor"])
    ratio = worst_floor["gas"] / worst_floor["floor"]
    lines.append(
        f"- Channel mode (inbox + accumulator) <= {GOAL_FLOOR_RATIO}x the EIP-7623 floor at >= "
        f"{GOAL_FLOOR_MIN_CALLDATA:,} calldata bytes: {_verdict(ratio <= GOAL_FLOOR_RATIO)} -- "
        f"worst {ratio:.3f}x over {len(channel)} transactions."
    )
    batched = {}
    for shape in ("messages", "one message"):
        candidates = [
            r
            for r in gas["rows"]
            if r["mode"] == "channel"
            and r["compress"]
            and r["shape"] == shape
            and r["readings"] > 1
        ]
        batched[shape] = min(candidates, key=lambda r: r["gas"] / r["readings"])
    node = batched["messages"]
    per = node["gas"] / node["readings"]
    alt = batched["one message"]
    lines.append(
        f"- <= {GOAL_GAS_PER_READING:,} gas per 100-byte JSON reading when batched: "
        f"{_verdict(per <= GOAL_GAS_PER_READING)} as the node batches (one message per "
        f"reading, the envelope's compression choice, channel mode): best {per:,.0f} gas/reading "
        f"at {node['readings']:,} readings per transaction. Readings sent as one JSON-array "
        f"message (compressed as a whole): {alt['gas'] / alt['readings']:,.0f} gas/reading at "
        f"{alt['readings']:,} per transaction "
        f"({_verdict(alt['gas'] / alt['readings'] <= GOAL_GAS_PER_READING)} that way)."
    )
    return lines


def render_footprint(fp: dict[str, Any]) -> list[str]:
    installed, imports, rss = fp["installed"], fp["imports"], fp["node_rss"]
    lines = [
        "### Footprint (fresh venvs, `pip install`, bytecode included, pip/setuptools excluded)",
        "",
        "| package set | installed | x lightpost | distributions | largest |",
        "|---|---:|---:|---:|---|",
    ]
    core = _core_total(installed["lightpost"])
    for name, sizes in installed.items():
        top = ", ".join(f"{d} {_mb(s)}" for d, s in list(sizes.items())[:3])
        total = _core_total(sizes)
        lines.append(f"| {name} | {_mb(total)} | {total / core:.1f}x | {len(sizes)} | {top} |")
    lines += [
        "",
        f"Import time: median of {fp['import_repeats']} fresh `python -I` processes. "
        "*import* is the import statement timed inside the process; *process* is the whole "
        "interpreter run timed from outside (start-up + import + exit).",
        "",
        "| package set | modules imported | import | x lightpost | process | RSS after import |",
        "|---|---|---:|---:|---:|---:|",
    ]
    modules = {name: "`" + ", ".join(m) + "`" for name, m in fp.get("modules", {}).items()}
    base = imports["lightpost"]["import_s"]
    for name, r in imports.items():
        ratio = f"{r['import_s'] / base:.2f}x" if name in modules else "-"
        lines.append(
            f"| {name} | {modules.get(name, '(none)')} | {r['import_s']:.3f} s | {ratio} | "
            f"{r['process_s']:.3f} s | {r['rss_mb']:.1f} MB |"
        )
    lines += [
        "",
        "Running node: `lightpost node --config DEVICE.toml` on a one-device devnet (anvil, 1 s "
        "blocks, channel mode), VmRSS from /proc/PID/status once the readings it was given "
        "are mined.",
        "",
        "| node from venv | keccak | messages sent | VmRSS | peak (VmHWM) |",
        "|---|---|---:|---:|---:|",
    ]
    for name, r in rss.items():
        backend = "safe-pysha3" if "fast" in name else "pure-python"
        lines.append(
            f"| {name} | {backend} | {r['messages']} | {r['rss_mb']:.1f} MB | "
            f"{r['peak_mb']:.1f} MB |"
        )
    return lines


REFERENCES = {
    "eth-account": "eth-account as pip installs it",
    "eth-account+cc": "eth-account with coincurve",
}
"""The two eth-account configurations the throughput goal is judged against."""


def render_throughput(cpu: dict[str, Any]) -> list[str]:
    sides = cpu["sides"]
    lines = [
        "### Throughput (operations per second, one core; best of 3 rounds)",
        "",
        f"Same inputs on every side (built once, handed to each worker as a file): EIP-1559 "
        f"transactions to the inbox carrying one 100-byte reading "
        f"({cpu['calldata_bytes']['1 reading']:,} calldata bytes) or a batch of 40 (4 KB of "
        f"readings, {cpu['calldata_bytes']['4 KB batch']:,} calldata bytes as the envelope packs "
        "them); inclusion = the sender recovered "
        f"plus the transactionsRoot of a {cpu['block_txs']}-transaction block rebuilt from its "
        "raw transactions and compared (eth-account: `Account.recover_transaction` plus a "
        "reference trie written in the bench with eth-account's keccak and RLP). "
        f"*eth-account (pip)* is `pip install eth-account` in a fresh venv "
        f"({sides['eth-account']['backend']}); *eth-account + coincurve* runs where coincurve "
        f"is installed, which eth-keys then uses ({sides['eth-account+cc']['backend']}). "
        "Ratios are lightpost's rate over each.",
        "",
        "| operation | input | eth-account (pip) | eth-account + coincurve "
        "| lightpost, pure-python keccak | ratio (pip / cc) "
        "| lightpost[fast], safe-pysha3 | ratio (pip / cc) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    pip, cc = sides["eth-account"]["rates"], sides["eth-account+cc"]["rates"]
    for size, ops in pip.items():
        for op, base in ops.items():
            best = cc[size][op]
            pure = sides["lightpost-pure"]["rates"][size][op]
            fast = sides["lightpost-fast"]["rates"][size][op]
            lines.append(
                f"| {op} | {size} | {base:,.0f} | {best:,.0f} | {pure:,.0f} | "
                f"{pure / base:.2f}x / {pure / best:.2f}x | {fast:,.0f} | "
                f"{fast / base:.2f}x / {fast / best:.2f}x |"
            )
    return lines


def _size(n: int) -> str:
    return f"{n // 1000} KB" if n >= 1000 else f"{n} B"


def render_gas(gas: dict[str, Any], gas_price: int = PAPER_GAS_PRICE) -> list[str]:
    paper = gas["paper_gas"]
    reserved = PAPER_GAS_LIMIT * gas_price / ETH
    lines = [
        "### Gas (real receipts, 100-byte JSON readings)",
        "",
        f"The paper: one legacy transaction per reading, gas limit {PAPER_GAS_LIMIT:,} at "
        f"{gas_price // 10**9} gwei. Measured: **{paper:,} gas used** per 100-byte reading "
        f"(EIP-7623 floor of the reading {gas['paper_floor']:,}); the fixed limit reserves "
        f"{reserved:.4f} ETH per reading up front and the transaction pays "
        f"{paper * gas_price / ETH:.6f} ETH (gas used x {gas_price // 10**9} gwei). "
        f"The first channel-mode post of a (sender, channel) pays its two zero-to-nonzero "
        f"SSTOREs once: {gas['first_post_gas']:,} gas for one reading (floor "
        f"{gas['first_post_floor']:,}); every row below is a later post.",
        "",
        "*floor* = EIP-7623 floor of the transaction's calldata (21,000 + 10 x tokens); "
        "*raw floor* = the floor of the readings' bytes alone as plain calldata. "
        "*vs paper* compares gas used per reading with the paper's measured gas used; "
        f"*cost/reading* is at the paper's {gas_price // 10**9} gwei "
        f"(paper: {paper * gas_price / ETH * 1e6:,.0f} micro-ETH charged, "
        f"{reserved * 1e6:,.0f} reserved).",
        "",
        "| payload/tx | readings | as | mode | compressed | calldata | gas used | gas/payload B "
        "| gas/reading | vs floor | vs raw floor | vs paper | cost/reading |",
        "|---:|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in gas["rows"]:
        per_reading = r["gas"] / r["readings"]
        compressed = "no"
        if r["compress"] and r["deflated_post"]:
            compressed = "whole post (v2)"
        elif r["compress"]:
            compressed = f"{r['compressed_records']} of {_records(r)}"
        lines.append(
            f"| {_size(r['size'])} | {r['readings']:,} | {r['shape']} | {r['mode']} | "
            f"{compressed} | {r['calldata_bytes']:,} | {r['gas']:,} | "
            f"{r['gas'] / r['payload_bytes']:.1f} | {per_reading:,.0f} | "
            f"{r['gas'] / r['floor']:.3f}x | {r['gas'] / r['payload_floor']:.3f}x | "
            f"{per_reading / paper:.3f}x | {per_reading * gas_price / ETH * 1e6:,.1f} µETH |"
        )
    return lines


def _records(row: dict[str, Any]) -> int:
    """Records in a row's post: one per message (no benchmark message is chunked)."""
    return row["readings"] if row["shape"] == "messages" else 1


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"Generated by `python tools/bench.py --write-docs` on {m['date']}: {m['cpu']}, "
        f"{m['cores']} cores, Python {m['python']}, {m['anvil']}; 1-minute load average "
        f"at the start {m['load']:.1f} (the machine is shared); the run took "
        f"{results['seconds'] / 60:.1f} minutes.",
        "",
        "### Goals (issue 8)",
        "",
        *goals(results),
        "",
        *render_footprint(results["footprint"]),
        "",
        *render_throughput(results["throughput"]),
        "",
        *render_gas(results["gas"]),
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the raw results as JSON")
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS))
    args = parser.parse_args()
    if args.write_docs and set(args.only) != set(PARTS):
        parser.error("--write-docs needs every part (drop --only)")
    start = time.monotonic()
    results: dict[str, Any] = {"machine": machine()}
    steps: dict[str, Callable[[], dict[str, Any]]] = {
        "footprint": _footprint,
        "throughput": _throughput,
        "gas": measure_gas,
    }
    for part in PARTS:
        if part in args.only:
            results[part] = steps[part]()
    results["seconds"] = time.monotonic() - start
    progress(f"done in {results['seconds'] / 60:.1f} minutes")
    if args.json or set(args.only) != set(PARTS):
        print(json.dumps(results, indent=2))
    else:
        print(render(results))
    if args.write_docs:
        write_section(DOC, render(results), BEGIN, END)
        progress(f"wrote {DOC.relative_to(ROOT)}")
    return 0


def _footprint() -> dict[str, Any]:
    from bench_footprint import PACKAGE_SETS, measure_footprint

    return measure_footprint() | {"modules": {n: m for n, (_, m) in PACKAGE_SETS.items()}}


def _throughput() -> dict[str, Any]:
    from bench_cpu import measure_throughput

    return measure_throughput()


if __name__ == "__main__":
    sys.exit(main())
