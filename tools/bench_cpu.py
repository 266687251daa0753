"""Throughput of lightpost's core vs eth-account 0.14.0 on the same inputs (`make bench`).

Each side runs in its own fresh interpreter (``python tools/bench_cpu.py --worker SIDE``
prints JSON), so that the keccak backend can be chosen before lightpost is imported:
``lightpost-pure`` hides safe-pysha3 (``sys.modules['sha3'] = None``, as on a device
installed with plain `pip install lightpost`), ``lightpost-fast`` lets lightpost find it,
``eth-account`` never imports lightpost at all. eth-account runs twice: ``eth-account``
as `pip install eth-account` leaves it in a fresh venv (eth-keys then signs and recovers
with its own pure-Python secp256k1, eth_keys' NativeECCBackend), and ``eth-account+cc``
in the dev venv, where coincurve is installed and eth-keys picks it
(CoinCurveECCBackend) -- the fastest eth-account can be made. The goal is judged
against both, each stated. The inputs are built once by the parent (with lightpost) and
handed to every worker in a JSON file, so every side works on the very same bytes.

What is compared, per input size (one 100-byte reading per transaction, and the node's
default batch of 4 KB per transaction):

sign + encode
    The same EIP-1559 transaction (same fields, the same inbox calldata) signed and
    serialized to its raw bytes: ``sign_transaction(tx, key).raw`` vs
    ``LocalAccount.sign_transaction(dict).raw_transaction`` (the account object made once,
    outside the loop). Both are RFC 6979 deterministic, so the bytes must be identical,
    and the workers' outputs are compared.
recover
    Sender recovered from the raw bytes: ``verify_signed_raw`` (decodes, checks the chain
    id, recovers) vs ``Account.recover_transaction``.
recover + verify inclusion
    The above plus rebuilding the transactionsRoot of the 16-transaction block that holds
    the transaction from the block's raw transactions and comparing it with the header's
    root (what lightpost's ``included`` level does for a transaction). eth-account has no
    trie, so its side uses :func:`reference_ordered_trie_root` below: a textbook
    Merkle-Patricia root written with eth-account's own keccak (eth_hash via eth_utils)
    and RLP (the ``rlp`` package eth-account depends on).

Rates are the best of a few short rounds (the machine is shared), in operations per second
of one core. Nothing here is asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench_common import DEV_KEY, progress, reading

SIDES = ("lightpost-pure", "lightpost-fast", "eth-account", "eth-account+cc")
"""The workers: lightpost with each keccak backend, and the reference twice (as pip
installs it; with coincurve)."""

ETH_ACCOUNT = "eth-account==0.14.0"
"""The reference, pinned like the dev extra."""

SIZES = {"1 reading": 1, "4 KB batch": 40}
"""Input sizes: readings per transaction (40 x (100 B + 22 B record) ~ the node's default
4096-byte batch, lightpost.node.config.DEFAULT_BATCH_BYTES)."""

BLOCK_TXS = 16
"""Transactions in the block whose transactionsRoot is rebuilt for "verify inclusion"."""

TARGET_INDEX = 5
"""Position of the transaction under test inside that block."""

CHAIN_ID = 31337
INBOX = bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3")
"""The address the devnet's inbox gets (first contract of anvil's account #0)."""

ROUNDS = 3
ROUND_SECONDS = 0.3
"""Each rate is the best of ROUNDS rounds of ROUND_SECONDS each."""


def _rate(fn: Callable[[], object]) -> float:
    best = 0.0
    for _ in range(ROUNDS):
        n, start = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - start
            if elapsed >= ROUND_SECONDS:
                break
        best = max(best, n / elapsed)
    return best


def _calldata(readings: int) -> bytes:
    """The inbox calldata of a post carrying ``readings`` readings (built with lightpost's
    envelope by every worker: eth-account has no envelope of its own)."""
    from lightpost.core import envelope
    from lightpost.core.inbox import HEADER_BYTES, inbox_calldata

    messages = [
        envelope.Message(seq=i, timestamp=i, content_type=envelope.ContentType.JSON, payload=p)
        for i, p in enumerate(reading(i) for i in range(readings))
    ]
    channel = envelope.channel_id("district-7")
    (post,) = envelope.pack_messages(channel, None, messages, max_post_bytes=120_000)
    return inbox_calldata(channel, None, envelope.encode_post(post)[HEADER_BYTES:])


def _tx_fields(nonce: int, data: bytes) -> dict[str, Any]:
    return {
        "chain_id": CHAIN_ID,
        "nonce": nonce,
        "max_priority_fee_per_gas": 10**9,
        "max_fee_per_gas": 30 * 10**9,
        "gas": 500_000,
        "to": INBOX,
        "value": 0,
        "data": data,
    }


def _block(data: bytes) -> list[bytes]:
    """BLOCK_TXS raw transactions (nonces 0..15, the same calldata), signed by lightpost
    outside any timing; the one under test is at TARGET_INDEX."""
    from lightpost.core.keys import PrivateKey
    from lightpost.core.tx import DynamicFeeTx, sign_transaction

    key = PrivateKey.from_hex(DEV_KEY)
    return [
        sign_transaction(DynamicFeeTx(**_tx_fields(n, data)), key).raw for n in range(BLOCK_TXS)
    ]


# --- the reference Merkle-Patricia root (eth-account's keccak and RLP) ----------------


def _hex_prefix(nibbles: Sequence[int], *, leaf: bool) -> bytes:
    flag = (2 if leaf else 0) + (len(nibbles) % 2)
    if len(nibbles) % 2:
        head, rest = [flag, nibbles[0]], nibbles[1:]
    else:
        head, rest = [flag, 0], nibbles
    both = head + list(rest)
    return bytes(both[i] * 16 + both[i + 1] for i in range(0, len(both), 2))


def reference_trie_root(
    items: dict[bytes, bytes],
    keccak: Callable[[bytes], bytes],
    rlp_encode: Callable[[object], bytes],
) -> bytes:
    """Merkle-Patricia trie root (Yellow Paper appendix D), written from the spec
    independently of lightpost.core.trie: a node is embedded in its parent when its RLP
    is shorter than 32 bytes, else referenced by its keccak."""

    def ref(node: object) -> object:
        encoded = rlp_encode(node)
        return node if len(encoded) < 32 else keccak(encoded)

    def build(pairs: list[tuple[list[int], bytes]], depth: int) -> object:
        if len(pairs) == 1:
            path, value = pairs[0]
            return [_hex_prefix(path[depth:], leaf=True), value]
        shared = 0
        first = pairs[0][0]
        while all(
            len(path) > depth + shared and path[depth + shared] == first[depth + shared]
            for path, _ in pairs
        ):
            shared += 1
        if shared:
            child = build(pairs, depth + shared)
            return [_hex_prefix(first[depth : depth + shared], leaf=False), ref(child)]
        branch: list[object] = [b""] * 17
        for nibble in range(16):
            group = [(p, v) for p, v in pairs if len(p) > depth and p[depth] == nibble]
            if group:
                branch[nibble] = ref(build(group, depth + 1))
        ending = [v for p, v in pairs if len(p) == depth]
        if ending:
            branch[16] = ending[0]
        return branch

    if not items:
        return keccak(rlp_encode(b""))
    pairs = [([n for b in k for n in (b >> 4, b & 15)], v) for k, v in sorted(items.items())]
    return keccak(rlp_encode(build(pairs, 0)))


def reference_ordered_trie_root(
    values: Sequence[bytes],
    keccak: Callable[[bytes], bytes],
    rlp_encode: Callable[[object], bytes],
) -> bytes:
    """Root of the trie rlp(i) -> values[i] (how a header commits to its transactions)."""
    return reference_trie_root({rlp_encode(i): v for i, v in enumerate(values)}, keccak, rlp_encode)


# --- the workers ------------------------------------------------------------------------


def build_inputs() -> dict[str, Any]:
    """Per input size: the calldata, the block's raw transactions and their root."""
    from lightpost.core.trie import ordered_trie_root

    out = {}
    for label, readings in SIZES.items():
        data = _calldata(readings)
        raws = _block(data)
        out[label] = {
            "data": data.hex(),
            "raws": [r.hex() for r in raws],
            "root": ordered_trie_root(raws).hex(),
        }
    return out


def _unpack(inputs: dict[str, Any], label: str) -> tuple[bytes, list[bytes], bytes]:
    case = inputs[label]
    return (
        bytes.fromhex(case["data"]),
        [bytes.fromhex(r) for r in case["raws"]],
        bytes.fromhex(case["root"]),
    )


def _lightpost_worker(inputs: dict[str, Any]) -> dict[str, Any]:
    from lightpost.core.hashing import KECCAK_BACKEND
    from lightpost.core.keys import PrivateKey
    from lightpost.core.trie import ordered_trie_root
    from lightpost.core.tx import DynamicFeeTx, sign_transaction
    from lightpost.core.verify import verify_signed_raw

    key = PrivateKey.from_hex(DEV_KEY)
    out: dict[str, Any] = {"backend": KECCAK_BACKEND, "rates": {}, "check": {}}
    for label in SIZES:
        data, raws, root = _unpack(inputs, label)
        tx = DynamicFeeTx(**_tx_fields(TARGET_INDEX, data))
        raw = raws[TARGET_INDEX]

        def included(raw: bytes = raw, raws: list[bytes] = raws, root: bytes = root) -> bytes:
            sender = verify_signed_raw(raw, chain_id=CHAIN_ID).sender
            if ordered_trie_root(raws) != root:
                raise AssertionError("transactionsRoot mismatch")
            return sender

        out["rates"][label] = {
            "sign + encode": _rate(lambda tx=tx: sign_transaction(tx, key).raw),
            "recover": _rate(lambda raw=raw: verify_signed_raw(raw, chain_id=CHAIN_ID).sender),
            "recover + verify inclusion": _rate(included),
        }
        out["check"][label] = {
            "raw": sign_transaction(tx, key).raw.hex(),
            "sender": included().hex(),
            "root": root.hex(),
            "calldata_bytes": len(data),
        }
    return out


def _eth_account_worker(inputs: dict[str, Any]) -> dict[str, Any]:
    import eth_hash.auto
    import eth_keys
    import rlp
    from eth_account import Account
    from eth_utils import keccak, to_checksum_address

    account = Account.from_key(DEV_KEY)
    keccak(b"")  # eth-hash picks its backend on first use
    hasher = getattr(eth_hash.auto.keccak, "hasher", None)
    backend = type(getattr(hasher, "__self__", None)).__module__.rsplit(".", 1)[-1]
    ecc = type(eth_keys.KeyAPI().backend).__name__
    out: dict[str, Any] = {"backend": f"eth-hash/{backend}, eth-keys/{ecc}", "rates": {}}
    out["check"] = {}
    for label in SIZES:
        data, raws, root = _unpack(inputs, label)
        fields = _tx_fields(TARGET_INDEX, data)
        tx = {
            "type": 2,
            "chainId": fields["chain_id"],
            "nonce": fields["nonce"],
            "maxPriorityFeePerGas": fields["max_priority_fee_per_gas"],
            "maxFeePerGas": fields["max_fee_per_gas"],
            "gas": fields["gas"],
            "to": to_checksum_address(fields["to"]),
            "value": 0,
            "data": data,
            "accessList": [],
        }
        raw = raws[TARGET_INDEX]
        if reference_ordered_trie_root(raws, keccak, rlp.encode) != root:
            raise SystemExit("eth-account side: the reference trie disagrees with the inputs")

        def included(raw: bytes = raw, raws: list[bytes] = raws, root: bytes = root) -> str:
            sender = Account.recover_transaction(raw)
            if reference_ordered_trie_root(raws, keccak, rlp.encode) != root:
                raise AssertionError("transactionsRoot mismatch")
            return str(sender)

        out["rates"][label] = {
            "sign + encode": _rate(lambda tx=tx: account.sign_transaction(tx).raw_transaction),
            "recover": _rate(lambda raw=raw: Account.recover_transaction(raw)),
            "recover + verify inclusion": _rate(included),
        }
        out["check"][label] = {
            "raw": bytes(account.sign_transaction(tx).raw_transaction).hex(),
            "sender": included()[2:].lower(),
            "root": root.hex(),
            "calldata_bytes": len(data),
        }
    return out


def _worker(side: str, inputs: dict[str, Any]) -> dict[str, Any]:
    if side.startswith("eth-account"):
        return _eth_account_worker(inputs)
    if side == "lightpost-pure":
        sys.modules["sha3"] = None  # type: ignore[assignment]  # hide safe-pysha3
    result = _lightpost_worker(inputs)
    want = "pure-python" if side == "lightpost-pure" else "safe-pysha3"
    if result["backend"] != want:
        raise SystemExit(f"{side}: keccak backend is {result['backend']}, expected {want}")
    return result


def measure_throughput(python: str = sys.executable) -> dict[str, Any]:
    """Run every worker (each in a fresh interpreter) on the same inputs and cross-check
    their outputs. ``eth-account`` runs from a fresh venv with only eth-account in it."""
    from footprint import fresh_venv

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="lightpost-bench-cpu-") as tmp:
        inputs = Path(tmp) / "inputs.json"
        inputs.write_text(json.dumps(build_inputs()))
        progress(f"throughput: fresh venv with {ETH_ACCOUNT} (as pip installs it)")
        venv_dir = Path(tmp) / "eth-account"
        fresh_venv(venv_dir, ETH_ACCOUNT)
        pythons = {side: python for side in SIDES} | {"eth-account": str(venv_dir / "bin/python")}
        for side in SIDES:
            progress(f"throughput: {side}")
            proc = subprocess.run(
                [pythons[side], str(Path(__file__).resolve()), "--worker", side, str(inputs)],
                check=True,
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONHASHSEED": "0"},
            )
            results[side] = json.loads(proc.stdout)
    reference = results["eth-account"]["check"]
    for side in SIDES:
        if results[side]["check"] != reference:
            raise SystemExit(f"throughput: {side} disagrees with eth-account on the outputs")
    return {
        "sides": {
            side: {"backend": r["backend"], "rates": r["rates"]} for side, r in results.items()
        },
        "calldata_bytes": {label: c["calldata_bytes"] for label, c in reference.items()},
        "block_txs": BLOCK_TXS,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=SIDES, help="run one side, print JSON")
    parser.add_argument("inputs", nargs="?", help="with --worker: the inputs JSON file")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker, json.loads(Path(args.inputs).read_text()))))
    else:
        print(json.dumps(measure_throughput(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
