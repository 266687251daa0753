"""The inbox contract on a real anvil: storage, events, reverts and gas figures.

Run with ``-s`` to see the gas table. Transactions are type-2, signed by lightpost
(lightpost.core.tx) with anvil's dev keys and sent with eth_sendRawTransaction.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from lightpost.adapters.rpc import HttpEndpoint
from lightpost.core.gas import floor_gas, gas_used, intrinsic_gas
from lightpost.core.hashing import keccak256
from lightpost.core.inbox import (
    ACC_ZERO,
    EVENT_TOPIC,
    INBOX_EXECUTION_GAS_FIRST_POST,
    INBOX_EXECUTION_GAS_FIXED,
    INBOX_EXECUTION_GAS_PER_BYTE,
    InboxPost,
    accumulator_of,
    accumulator_slots,
    decode_post_log,
    inbox_calldata,
    inbox_execution_gas,
)
from lightpost.core.keys import PrivateKey
from lightpost.core.tx import DynamicFeeTx, encode_transaction, sign_transaction
from lightpost_operator.anvil import AnvilProcess
from lightpost_operator.contracts import inbox_initcode, inbox_runtime
from tests.conftest import ANVIL_DEV_KEYS

pytestmark = pytest.mark.integration

ANVIL_CHAIN_ID = 31337
"""anvil's default chain id."""

TIP = 10**9
"""Priority fee per gas (1 gwei)."""

FEE_CAP = 100 * 10**9
"""Fee cap per gas, far above anvil's starting base fee of 1 gwei."""

GAS_LIMIT = 6_000_000
"""Enough for a 100 KB post (floor ~4.02M), below the EIP-7825 cap."""

MAX_DELTA_OVER_PLAIN = 15_000
"""Issue target: a non-first post costs at most this much more than plain calldata."""

MAX_FLOOR_RATIO = 1.05
"""Issue target: at >= 2 KB a non-first post costs at most 1.05 x the EIP-7623 floor."""

RECEIPT_POLLS = 200
"""Receipt polls before giving up (x RECEIPT_POLL_S = 4 s)."""

RECEIPT_POLL_S = 0.02
"""Delay between receipt polls."""

CH_A = keccak256(b"lightpost test channel A")
CH_B = keccak256(b"lightpost test channel B")


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def _word(address: bytes) -> str:
    return _hex(bytes(12) + address)


def _nonzero_random(n: int, seed: int) -> bytes:
    """Random bytes with no zero byte (the worst case for calldata cost)."""
    return bytes(b or 1 for b in random.Random(seed).randbytes(n))


def _receipt(ep: HttpEndpoint, tx_hash: str) -> dict[str, Any]:
    """Poll for the receipt: anvil automines, but the answer may lag the send slightly."""
    for _ in range(RECEIPT_POLLS):
        receipt = ep.call("eth_getTransactionReceipt", [tx_hash])
        if receipt is not None:
            assert isinstance(receipt, dict)
            return receipt
        time.sleep(RECEIPT_POLL_S)
    raise AssertionError(f"no receipt for {tx_hash}")


def _send_signed(
    ep: HttpEndpoint, key: PrivateKey, to: bytes | None, data: bytes, value: int = 0
) -> dict[str, Any]:
    nonce = int(ep.call("eth_getTransactionCount", [_hex(key.address), "pending"]), 16)
    tx = DynamicFeeTx(
        chain_id=ANVIL_CHAIN_ID,
        nonce=nonce,
        max_priority_fee_per_gas=TIP,
        max_fee_per_gas=FEE_CAP,
        gas=GAS_LIMIT,
        to=to,
        value=value,
        data=data,
    )
    signed = sign_transaction(tx, key)
    tx_hash = ep.call("eth_sendRawTransaction", [_hex(encode_transaction(signed))])
    assert tx_hash == _hex(signed.hash)
    return _receipt(ep, tx_hash)


@dataclass
class Chain:
    ep: HttpEndpoint
    keys: list[PrivateKey]
    inbox: bytes

    @property
    def accounts(self) -> list[bytes]:
        return [k.address for k in self.keys]

    def send(self, sender: bytes, to: bytes, data: bytes, value: int = 0) -> dict[str, Any]:
        key = next(k for k in self.keys if k.address == sender)
        return _send_signed(self.ep, key, to, data, value)

    def post(self, sender: bytes, calldata: bytes) -> int:
        receipt = self.send(sender, self.inbox, calldata)
        assert receipt["status"] == "0x1"
        return int(receipt["gasUsed"], 16)

    def slot(self, slot: int) -> bytes:
        value = self.ep.call("eth_getStorageAt", [_hex(self.inbox), hex(slot), "latest"])
        return int(value, 16).to_bytes(32, "big")

    def logs(self, topics: list[str | None]) -> list[InboxPost]:
        raw = self.ep.call(
            "eth_getLogs",
            [
                {
                    "fromBlock": "0x0",
                    "toBlock": "latest",
                    "address": _hex(self.inbox),
                    "topics": topics,
                }
            ],
        )
        return [
            decode_post_log(
                bytes.fromhex(log["address"][2:]),
                [bytes.fromhex(t[2:]) for t in log["topics"]],
                bytes.fromhex(log["data"][2:]),
                inbox=self.inbox,
            )
            for log in raw
        ]


@pytest.fixture
def chain(fresh_anvil: AnvilProcess) -> Iterator[Chain]:
    ep = HttpEndpoint(fresh_anvil.url, label="anvil")
    keys = [PrivateKey.from_hex(k) for k in ANVIL_DEV_KEYS]
    receipt = _send_signed(ep, keys[0], None, inbox_initcode())
    assert receipt["status"] == "0x1"
    inbox = bytes.fromhex(receipt["contractAddress"][2:])
    assert bytes.fromhex(ep.call("eth_getCode", [_hex(inbox), "latest"])[2:]) == inbox_runtime()
    yield Chain(ep, keys, inbox)


def test_storage_and_logs_match_the_python_mirror(chain: Chain) -> None:
    alice, bob, carol = chain.accounts[0], chain.accounts[1], chain.accounts[2]
    plan = [  # (sender, channel, recipient, body)
        (alice, CH_A, None, b"hello"),
        (alice, CH_A, carol, b"\x00" * 40),
        (bob, CH_A, carol, b"from bob"),
        (alice, CH_B, None, _nonzero_random(300, 1)),
        (bob, CH_B, alice, b"b"),
        (alice, CH_A, bob, b"third on A"),
        (bob, CH_A, None, b"second from bob"),
    ]
    sent: dict[tuple[bytes, bytes], list[bytes]] = {}
    for sender, channel, recipient, body in plan:
        calldata = inbox_calldata(channel, recipient, body)
        chain.post(sender, calldata)
        sent.setdefault((sender, channel), []).append(calldata)

    for (sender, channel), calldatas in sent.items():
        acc_slot, count_slot = accumulator_slots(sender, channel)
        assert chain.slot(acc_slot) == accumulator_of(calldatas)
        assert int.from_bytes(chain.slot(count_slot), "big") == len(calldatas)
    # an untouched (sender, channel) reads as the zero accumulator
    assert chain.slot(accumulator_slots(carol, CH_A)[0]) == ACC_ZERO

    # filter by channel: every post on A, in order, with its 1-based index per sender
    on_a = chain.logs([_hex(EVENT_TOPIC), _hex(CH_A)])
    assert [(p.sender, p.calldata) for p in on_a] == [
        (s, inbox_calldata(c, r, b)) for s, c, r, b in plan if c == CH_A
    ]
    assert [p.index for p in on_a if p.sender == alice] == [1, 2, 3]
    # filter by sender: the receiver rebuilds bob's accumulators from the logs alone
    by_bob = chain.logs([_hex(EVENT_TOPIC), None, _word(bob)])
    assert {p.sender for p in by_bob} == {bob}
    for channel in (CH_A, CH_B):
        mine = sorted((p for p in by_bob if p.channel == channel), key=lambda p: p.index)
        assert [p.index for p in mine] == list(range(1, len(mine) + 1))
        assert accumulator_of(p.calldata for p in mine) == chain.slot(
            accumulator_slots(bob, channel)[0]
        )
    # filter by recipient
    to_carol = chain.logs([_hex(EVENT_TOPIC), None, None, _word(carol)])
    assert [p.body for p in to_carol] == [b"\x00" * 40, b"from bob"]
    assert all(p.recipient == carol for p in to_carol)
    broadcasts = chain.logs([_hex(EVENT_TOPIC), None, None, _hex(bytes(32))])
    assert [p.body for p in broadcasts] == [b"hello", plan[3][3], b"second from bob"]
    assert all(p.recipient is None for p in broadcasts)


def test_reverts_leave_no_trace(chain: Chain) -> None:
    alice = chain.accounts[0]
    good = inbox_calldata(CH_A, None, b"x")
    cases = {
        "64 bytes (empty body)": (good[:64], 0),
        "empty calldata": (b"", 0),
        "value > 0": (good, 1),
        "recipient word not an address": (CH_A + b"\x01" + bytes(31) + b"x", 0),
    }
    for name, (data, value) in cases.items():
        receipt = chain.send(alice, chain.inbox, data, value)
        assert receipt["status"] == "0x0", name
        assert receipt["logs"] == [], name
    acc_slot, count_slot = accumulator_slots(alice, CH_A)
    assert chain.slot(acc_slot) == ACC_ZERO
    assert chain.slot(count_slot) == bytes(32)
    chain.post(alice, good)  # the contract still works, and the 65-byte minimum is accepted
    assert chain.slot(count_slot)[-1] == 1


@dataclass
class Row:
    body: int
    kind: str
    plain: int
    inbox: int
    floor: int

    @property
    def delta(self) -> int:
        return self.inbox - self.plain

    @property
    def ratio(self) -> float:
        return self.inbox / self.floor


def _measure(chain: Chain, body_len: int, seed: int, body: bytes | None = None) -> list[Row]:
    """First and second post of a fresh (sender, channel), and the same calldata to an EOA."""
    sender, eoa = chain.accounts[1], chain.accounts[3]
    channel = keccak256(b"gas channel %d" % seed)
    body = _nonzero_random(body_len, seed) if body is None else body
    calldata = inbox_calldata(channel, eoa, body)
    plain = chain.send(sender, eoa, calldata)
    assert plain["status"] == "0x1"
    plain_gas = int(plain["gasUsed"], 16)
    assert plain_gas == gas_used(calldata)  # plain calldata costs exactly the gas model
    floor = floor_gas(calldata)
    first = chain.post(sender, calldata)
    nxt = chain.post(sender, calldata)
    return [
        Row(body_len, "first", plain_gas, first, floor),
        Row(body_len, "next", plain_gas, nxt, floor),
    ]


def test_gas_targets(chain: Chain) -> None:
    rows: list[Row] = []
    for seed, size in enumerate((100, 1024, 2048, 10 * 1024, 100 * 1024), start=1):
        rows += _measure(chain, size, seed)
    zero_rows = _measure(chain, 100, 99, body=bytes(100))  # all-zero body: least floor slack

    print("\ninbox gas (anvil, Bpo1): calldata = 64-byte header + body; random nonzero body")
    print(
        f"{'body':>7} {'post':>5} {'plain':>9} {'inbox':>9} {'delta':>7} {'floor':>9} {'ratio':>6}"
    )
    for r in [*rows, *zero_rows]:
        body = f"{r.body}" + ("z" if r in zero_rows else "")
        print(
            f"{body:>7} {r.kind:>5} {r.plain:>9,} {r.inbox:>9,} {r.delta:>7,} "
            f"{r.floor:>9,} {r.ratio:>6.3f}"
        )

    for r in [*rows, *zero_rows]:
        if r.kind == "next" and r.body <= 1024:
            assert r.delta <= MAX_DELTA_OVER_PLAIN, r
        if r.kind == "next" and r.body >= 2048:
            assert r.inbox <= MAX_FLOOR_RATIO * r.floor, r


def test_execution_gas_model_is_exact(chain: Chain) -> None:
    """With an all-zero body the standard cost exceeds the floor, so the receipt shows the
    execution gas itself: it must equal inbox_execution_gas and stay under the bounds."""
    sender = chain.accounts[2]
    for seed, size in enumerate((1, 100, 1000, 10_000, 60_000)):
        calldata = inbox_calldata(keccak256(b"exec %d" % seed), None, bytes(size))
        for first_post in (True, False):
            used = chain.post(sender, calldata)
            execution = used - intrinsic_gas(calldata)
            assert used > floor_gas(calldata)  # the floor does not hide the execution gas
            assert execution == inbox_execution_gas(len(calldata), first_post=first_post)
            fixed = INBOX_EXECUTION_GAS_FIRST_POST if first_post else INBOX_EXECUTION_GAS_FIXED
            assert execution <= fixed + INBOX_EXECUTION_GAS_PER_BYTE * len(calldata)
