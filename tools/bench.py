"""`make bench`: measured gas per reading and CPU throughput of the core.

Gas figures come from real receipts on a fresh anvil 1.7.1 (EIP-7623 active); nothing
here is a timing assert. With --write-docs the tables replace the generated section of
docs/benchmarks.md (between the BEGIN/END markers).

Usage: python tools/bench.py [--write-docs] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lightpost.adapters.contracts import inbox_initcode
from lightpost.adapters.rpc import HttpEndpoint
from lightpost.core import envelope, trie
from lightpost.core.gas import floor_gas
from lightpost.core.header import verify_header
from lightpost.core.inbox import inbox_calldata, inbox_execution_gas
from lightpost.core.keys import PrivateKey
from lightpost.core.tx import DynamicFeeTx, LegacyTx, decode_transaction, sign_transaction
from lightpost.node.chain import Chain, parse_quantity
from lightpost_operator.anvil import AnvilProcess, free_port
from lightpost_operator.wallet import send_operator_tx

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- BEGIN GENERATED BENCH -->", "<!-- END GENERATED BENCH -->"

DEV_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
"""anvil dev account #1 (public test mnemonic): the benchmark's device."""

PAPER_GAS_PRICE = 30 * 10**9
"""The paper's fixed gas price (30 gwei), used for its one-tx-per-reading baseline."""

BATCH_SIZES = (1, 10, 50, 100, 200)
"""Readings per transaction measured in channel mode."""

READING_TEMPLATE = '{{"id":"meter-{i:04d}","kWh":{kwh:.3f},"V":{v:.1f}}}'
"""A smart-meter reading as JSON text (~40 bytes), the unit of the gas comparison."""


def reading(i: int) -> bytes:
    return READING_TEMPLATE.format(i=i % 10_000, kwh=1234.5 + i * 0.137, v=229.0 + i % 7).encode()


def _gas_used(chain: Chain, tx_hash: bytes) -> int:
    receipt = chain.wait_receipt(tx_hash, timeout=30)
    return parse_quantity(receipt["gasUsed"], "gasUsed")


def measure_gas() -> dict[str, Any]:
    key = PrivateKey.from_hex(DEV_KEY)
    with AnvilProcess(port=free_port()) as anvil:
        chain = Chain([HttpEndpoint(anvil.url, "rpc#0")], quorum=1)
        chain_id = chain.chain_id()
        nonce = chain.nonce(key.address)
        _, receipt = send_operator_tx(
            chain, chain_id, key, nonce=nonce, to=None, data=inbox_initcode(), execution_gas=200_000
        )
        assert receipt is not None
        inbox = bytes.fromhex(str(receipt["contractAddress"])[2:])
        nonce += 1
        recipient = bytes.fromhex("70997970c51812dc3a010c7d01b50e0d17dc79c8")
        rows: list[dict[str, Any]] = []

        # The paper: one legacy tx per reading, the raw reading as calldata, 30 gwei.
        paper = LegacyTx(
            chain_id=chain_id,
            nonce=nonce,
            gas_price=PAPER_GAS_PRICE,
            gas=210_000,
            to=recipient,
            value=0,
            data=reading(0),
        )
        signed = sign_transaction(paper, key)
        chain.broadcast(signed.raw, signed.hash)
        paper_gas = _gas_used(chain, signed.hash)
        nonce += 1
        rows.append(
            {
                "mode": "paper: 1 tx per reading",
                "readings": 1,
                "gas": paper_gas,
                "gas_per_reading": paper_gas,
                "floor": floor_gas(reading(0)),
            }
        )

        channel = envelope.channel_id("district-7")
        seq = 0
        for first, batch in [(True, 1)] + [(False, b) for b in BATCH_SIZES]:
            messages = []
            for _ in range(batch):
                messages.append(
                    envelope.Message(
                        seq=seq,
                        timestamp=1_700_000_000_000 + seq,
                        content_type=envelope.ContentType.JSON,
                        payload=reading(seq),
                    )
                )
                seq += 1
            posts = envelope.pack_messages(channel, None, messages, max_post_bytes=120_000)
            assert len(posts) == 1
            calldata = inbox_calldata(channel, None, envelope.encode_post(posts[0]))
            _, receipt = send_operator_tx(
                chain,
                chain_id,
                key,
                nonce=nonce,
                to=inbox,
                data=calldata,
                execution_gas=inbox_execution_gas(len(calldata), first_post=first),
            )
            assert receipt is not None
            nonce += 1
            gas = parse_quantity(receipt["gasUsed"], "gasUsed")
            label = "lightpost channel, first post" if first else "lightpost channel"
            rows.append(
                {
                    "mode": label,
                    "readings": batch,
                    "gas": gas,
                    "gas_per_reading": gas / batch,
                    "floor": floor_gas(calldata),
                    "calldata_bytes": len(calldata),
                }
            )
        chain.close()
    return {
        "paper_gas_per_reading": paper_gas,
        "rows": rows,
        "paper_cost_wei_per_reading": paper_gas * PAPER_GAS_PRICE,
    }


def _rate(fn: Callable[[], object], seconds: float = 0.5) -> float:
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        n += 1
    return n / (time.perf_counter() - start)


def measure_cpu() -> dict[str, float]:
    key = PrivateKey.from_hex(DEV_KEY)
    tx = DynamicFeeTx(
        chain_id=31337,
        nonce=1,
        max_priority_fee_per_gas=1,
        max_fee_per_gas=2,
        gas=100_000,
        to=bytes(20),
        value=0,
        data=os.urandom(1024),
    )
    signed = sign_transaction(tx, key)
    msgs = [
        envelope.Message(seq=i, timestamp=i, content_type=1, payload=reading(i)) for i in range(50)
    ]
    post = envelope.pack_messages(envelope.channel_id("c"), None, msgs, max_post_bytes=120_000)[0]
    post_bytes = envelope.encode_post(post)
    items = {os.urandom(32): os.urandom(40) for _ in range(256)}
    some_key = next(iter(items))
    proof = trie.make_proof(items, some_key)
    root = trie.trie_root(items)
    vectors = Path(ROOT.parent / "shared" / "vectors" / "anvil" / "block-2-mixed-types.json")
    header_obj = None
    if vectors.exists():
        data = json.loads(vectors.read_text())
        header_obj = next(
            (
                v
                for k, v in data.items()
                if "block" in k.lower() and isinstance(v, dict) and "hash" in v
            ),
            None,
        )
    out = {
        "sign type-2 tx (1 KB), per s": _rate(lambda: sign_transaction(tx, key)),
        "decode + recover type-2 tx, per s": _rate(lambda: decode_transaction(signed.raw)),
        "encode post (50 readings), per s": _rate(lambda: envelope.encode_post(post)),
        "decode post (50 readings), per s": _rate(lambda: envelope.decode_post(post_bytes)),
        "verify trie proof (256 keys), per s": _rate(
            lambda: trie.verify_proof(root, some_key, proof)
        ),
    }
    if header_obj is not None:
        header_obj = {k: v for k, v in header_obj.items() if k != "transactions"} | {
            "transactions": header_obj.get("transactions", [])
        }
        try:
            verify_header(header_obj)
            out["recompute + check header hash, per s"] = _rate(lambda: verify_header(header_obj))
        except Exception:  # the vector layout is not ours to rely on here
            pass
    return out


def render(gas: dict[str, Any], cpu: dict[str, float]) -> str:
    lines = [
        "### Gas per reading (anvil 1.7.1, EIP-7623 active, ~40-byte JSON meter readings)",
        "",
        "| mode | readings/tx | gas/tx | gas/reading | vs paper | EIP-7623 floor of the calldata |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    paper = gas["paper_gas_per_reading"]
    for r in gas["rows"]:
        lines.append(
            f"| {r['mode']} | {r['readings']} | {r['gas']:,} | "
            f"{r['gas_per_reading']:,.0f} | {r['gas_per_reading'] / paper:.2f}x | "
            f"{r['floor']:,} |"
        )
    lines += [
        "",
        "### Core throughput (one core of this machine, pure Python + coincurve)",
        "",
        "| operation | rate |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {rate:,.0f} |" for name, rate in cpu.items()]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description="lightpost benchmarks")
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    gas = measure_gas()
    cpu = measure_cpu()
    if args.json:
        print(json.dumps({"gas": gas, "cpu": cpu}, indent=2))
    else:
        print(render(gas, cpu))
    if args.write_docs:
        text = DOC.read_text()
        start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
        DOC.write_text(text[:start] + "\n" + render(gas, cpu) + text[end:])
        print(f"wrote {DOC.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
