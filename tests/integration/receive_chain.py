"""A small real chain of inbox posts for the receiver tests (anvil + lightpost signing).

``InboxChain`` deploys the inbox on an anvil, signs inbox transactions with lightpost
(type 2, anvil dev keys) and writes receiver configs. Nothing here trusts the code
under test: posts are built with the envelope encoder and sent raw.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightpost.adapters.rpc import Endpoint, HttpEndpoint
from lightpost.core.envelope import Message, Post, Record, channel_id, encode_post, pack_messages
from lightpost.core.inbox import inbox_calldata
from lightpost.core.keys import PrivateKey, to_checksum_address
from lightpost.core.tx import DynamicFeeTx, sign_transaction
from lightpost.errors import MethodNotSupported
from lightpost_operator.contracts import inbox_initcode
from tests.conftest import ANVIL_DEV_KEYS

CHAIN_ID = 31337
"""anvil's chain id (Ganache's is 1337: InboxChain.chain_id reads the node's)."""

GAS = 1_000_000
"""Gas limit of every test transaction (far above what a small post needs)."""

FEE_CAP = 100 * 10**9
"""Fee cap per gas: far above anvil's base fee."""

TIP = 10**9
"""Priority fee per gas."""

RECEIPT_WAIT_S = 10.0
"""Longest wait for an automined receipt."""

FINALITY_BLOCKS = 5
"""Blocks to mine so that everything before is at or below anvil's finalized head
(finalized = latest - 4)."""


def mine_blocks(ep: Endpoint, blocks: int) -> None:
    """Mine ``blocks`` empty blocks on anvil (anvil_mine) or Ganache (evm_mine {blocks})."""
    try:
        ep.call("anvil_mine", [hex(blocks)])
    except MethodNotSupported:
        ep.call("evm_mine", [{"blocks": blocks}])


def hx(data: bytes) -> str:
    return "0x" + data.hex()


@dataclass
class InboxChain:
    """An anvil with the inbox deployed, keys and helpers to post and mine."""

    url: str
    ep: HttpEndpoint = field(init=False)
    chain_id: int = field(init=False)
    inbox: bytes = field(init=False)
    keys: list[PrivateKey] = field(init=False)
    nonces: dict[bytes, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # long timeout: anvil_mine of hundreds of blocks on a loaded 2-core box is slow,
        # and a retried anvil_mine would mine twice
        self.ep = HttpEndpoint(self.url, "rpc#test", timeout=120.0, retries=0)
        self.keys = [PrivateKey.from_hex(k) for k in ANVIL_DEV_KEYS]
        self.chain_id = int(self.ep.call("eth_chainId", []), 16)
        receipt = self.send(self.keys[0], None, inbox_initcode())
        self.inbox = bytes.fromhex(receipt["contractAddress"][2:])

    def send(self, key: PrivateKey, to: bytes | None, data: bytes) -> dict[str, Any]:
        nonce = self.nonces.get(key.address)
        if nonce is None:
            nonce = int(self.ep.call("eth_getTransactionCount", [hx(key.address), "pending"]), 16)
        tx = DynamicFeeTx(
            chain_id=self.chain_id,
            nonce=nonce,
            max_priority_fee_per_gas=TIP,
            max_fee_per_gas=FEE_CAP,
            gas=GAS,
            to=to,
            value=0,
            data=data,
            access_list=(),
        )
        signed = sign_transaction(tx, key)
        self.nonces[key.address] = nonce + 1
        tx_hash = self.ep.call("eth_sendRawTransaction", [hx(signed.raw)])
        deadline = time.monotonic() + RECEIPT_WAIT_S
        while time.monotonic() < deadline:
            receipt = self.ep.call("eth_getTransactionReceipt", [tx_hash])
            if receipt:
                assert receipt["status"] == "0x1", "test transaction reverted"
                return dict(receipt)
            time.sleep(0.02)
        raise AssertionError("transaction not mined")

    def post(
        self, key: PrivateKey, channel: str, records: list[Record], recipient: bytes | None = None
    ) -> dict[str, Any]:
        body = encode_post(
            Post(channel=channel_id(channel), recipient=recipient, records=tuple(records))
        )
        return self.send(key, self.inbox, inbox_calldata(channel_id(channel), recipient, body[64:]))

    def post_messages(
        self,
        key: PrivateKey,
        channel: str,
        messages: list[Message],
        recipient: bytes | None = None,
        max_post_bytes: int = 4096,
    ) -> list[dict[str, Any]]:
        posts = pack_messages(
            channel_id(channel), recipient, messages, max_post_bytes=max_post_bytes
        )
        return [self.send(key, self.inbox, encode_post(p)) for p in posts]

    def direct(self, key: PrivateKey, to: bytes, records: list[Record]) -> dict[str, Any]:
        from lightpost.core.envelope import DIRECT_CHANNEL

        body = encode_post(Post(channel=DIRECT_CHANNEL, recipient=to, records=tuple(records)))
        return self.send(key, to, body)

    def mine(self, blocks: int = FINALITY_BLOCKS) -> None:
        mine_blocks(self.ep, blocks)

    def height(self) -> int:
        return int(self.ep.call("eth_blockNumber", []), 16)


@dataclass
class MeteredEndpoint:
    """Wraps an endpoint and counts calls and answer bytes per method (measurements)."""

    inner: Endpoint
    calls: dict[str, int] = field(default_factory=dict)
    bytes_in: dict[str, int] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.inner.label

    def _count(self, method: str, result: Any) -> None:
        self.calls[method] = self.calls.get(method, 0) + 1
        self.bytes_in[method] = self.bytes_in.get(method, 0) + len(json.dumps(result))

    def call(self, method: str, params: Sequence[Any]) -> Any:
        result = self.inner.call(method, params)
        self._count(method, result)
        return result

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        results = self.inner.batch(calls)
        for (method, _), result in zip(calls, results, strict=False):
            self._count(method, result)
        return results


def text(seq: int, body: str, timestamp: int = 1_767_225_600_000) -> Record:
    """An unchunked text record."""
    return Record(seq=seq, timestamp=timestamp + seq, content_type=1, payload=body.encode())


def write_config(
    directory: Path,
    *,
    endpoints: list[str],
    quorum: int,
    inbox: bytes,
    me: bytes,
    trusted: dict[str, list[bytes]],
    mode: str = "channel",
    finality_depth: int = 0,
    chain_id: int = CHAIN_ID,
) -> Path:
    """A receiver config; the keystore file holds only the address (no key needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "me.keystore.json").write_text(json.dumps({"address": me.hex()}))
    lines = [
        f"chain_id = {chain_id}",
        f"endpoints = {json.dumps(endpoints)}",
        f"quorum = {quorum}",
        'keystore = "me.keystore.json"',
        'data_dir = "data"',
        f'mode = "{mode}"',
        f'inbox = "{to_checksum_address(inbox)}"',
        f"finality_depth = {finality_depth}",
    ]
    for name, addresses in trusted.items():
        lines += [
            "",
            f"[channels.{json.dumps(name)}]",
            f"trusted = {json.dumps([to_checksum_address(a) for a in addresses])}",
        ]
    path = directory / "receiver.toml"
    path.write_text("\n".join(lines) + "\n")
    return path
