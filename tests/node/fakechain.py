"""A scripted in-memory chain behind fake JSON-RPC endpoints (no sockets).

``FakeNet`` holds canonical blocks, a txpool and balances; ``FakeEndpoint`` answers the
JSON-RPC methods the node uses from it, and each endpoint can be scripted: down, stale
nonce, a hook that rewrites any answer. Blocks are mined only when a test says so
(``net.mine()``), so every step of the sender is observed deterministically.

Blocks are provable: each has a real header (transactionsRoot over its transactions,
receiptsRoot over its receipts) whose keccak is the block hash, served in full by
``eth_getBlockByNumber`` and ``eth_getBlockReceipts``. The header is rebuilt from the
block's current fields on every read, so a test that changes a mined block (its base
fee, a receipt's status) replaces it by another block with another hash -- as a reorg
would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lightpost.core.fees import REPLACEMENT_BUMP_PERCENT, FeeQuote
from lightpost.core.hashing import keccak256
from lightpost.core.header import HEADER_FIELDS, BlockHeader, header_hash
from lightpost.core.receipts import Receipt, receipts_root
from lightpost.core.trie import ordered_trie_root
from lightpost.core.tx import DynamicFeeTx, SignedTransaction, decode_transaction
from lightpost.errors import (
    AlreadyKnown,
    EndpointUnavailable,
    InsufficientFunds,
    NodeError,
    NonceTooLow,
    ReplacementUnderpriced,
)

__all__ = [
    "CHAIN_ID",
    "FINALITY_LAG",
    "FakeEndpoint",
    "FakeNet",
    "block_json",
    "is_acceptable_replacement",
    "receipts_json",
    "tx_json",
]

CHAIN_ID = 31337
FINALITY_LAG = 2
"""finalized = latest - 2 on the fake chain."""


GAS_PER_TX = 50_000
"""Gas every fake transaction uses (cumulativeGasUsed steps by this)."""


@dataclass
class Block:
    number: int
    salt: int
    base_fee: int
    txs: list[SignedTransaction]
    reverted: set[bytes] = field(default_factory=set)
    """The net's reverted hashes (shared): a receipt's status is read from it."""

    def receipts(self) -> list[Receipt]:
        return [
            Receipt(
                tx_type=2,
                status=0 if t.hash in self.reverted else 1,
                cumulative_gas_used=GAS_PER_TX * (i + 1),
                logs_bloom=bytes(256),
                logs=(),
            )
            for i, t in enumerate(self.txs)
        ]

    def header(self) -> BlockHeader:
        salt = self.salt.to_bytes(8, "big")
        return BlockHeader(
            parent_hash=keccak256(b"parent" + salt),
            ommers_hash=keccak256(b"\xc0"),
            coinbase=bytes(20),
            state_root=keccak256(b"state" + salt),
            transactions_root=ordered_trie_root([t.raw for t in self.txs]),
            receipts_root=receipts_root(self.receipts()),
            logs_bloom=bytes(256),
            difficulty=0,
            number=self.number,
            gas_limit=30_000_000,
            gas_used=GAS_PER_TX * len(self.txs),
            timestamp=1_700_000_000 + 12 * self.number,
            extra_data=salt,
            mix_hash=bytes(32),
            nonce=bytes(8),
            base_fee_per_gas=self.base_fee,
        )

    @property
    def hash(self) -> bytes:
        return header_hash(self.header())


@dataclass
class FakeNet:
    base_fee: int = 10**9
    balance: int = 10**20
    blocks: list[Block] = field(default_factory=list)
    pool: dict[tuple[bytes, int], SignedTransaction] = field(default_factory=dict)
    salt: int = 0
    sent: list[bytes] = field(default_factory=list)
    """Every raw transaction ever accepted into the pool, in order."""
    reverted: set[bytes] = field(default_factory=set)
    """Hashes of mined transactions whose call reverted (receipt status 0)."""

    def __post_init__(self) -> None:
        if not self.blocks:
            self._append([])

    # -- chain ----------------------------------------------------------------------

    def _append(self, txs: list[SignedTransaction]) -> Block:
        self.salt += 1
        number = len(self.blocks)
        block = Block(
            number=number, salt=self.salt, base_fee=self.base_fee, txs=txs, reverted=self.reverted
        )
        self.blocks.append(block)
        return block

    @property
    def head(self) -> int:
        return len(self.blocks) - 1

    def count(self, address: bytes, height: int | None = None) -> int:
        top = self.head if height is None else height
        return sum(1 for b in self.blocks[: top + 1] for t in b.txs if t.sender == address)

    def mine(self, n: int = 1) -> None:
        """Mine ``n`` blocks, each taking every executable pool tx (nonce order)."""
        for _ in range(n):
            txs: list[SignedTransaction] = []
            for (sender, nonce), tx in sorted(self.pool.items(), key=lambda kv: kv[0][1]):
                executable = nonce == self.count(sender) + sum(1 for t in txs if t.sender == sender)
                fee_ok = tx.tx.max_fee_per_gas >= self.base_fee  # type: ignore[union-attr]
                if executable and fee_ok:
                    txs.append(tx)
            for tx in txs:
                del self.pool[(tx.sender, tx.tx.nonce)]
            self._append(txs)

    def mine_foreign(self, signed: SignedTransaction) -> None:
        """Mine a block holding ``signed`` directly (someone else used the nonce)."""
        self.pool.pop((signed.sender, signed.tx.nonce), None)
        self._append([signed])

    def reorg(self, depth: int, *, keep_txs: bool = False) -> None:
        """Replace the last ``depth`` blocks by empty ones (or re-mine the same txs in
        new blocks with other hashes when ``keep_txs``); dropped txs leave the pool."""
        old = self.blocks[-depth:]
        del self.blocks[-depth:]
        for b in old:
            self._append(list(b.txs) if keep_txs else [])

    def receipt(self, tx_hash: bytes) -> dict[str, Any] | None:
        for b in self.blocks:
            for i, t in enumerate(b.txs):
                if t.hash == tx_hash:
                    return receipts_json(b)[i]
        return None

    def in_chain(self) -> list[SignedTransaction]:
        return [t for b in self.blocks for t in b.txs]

    # -- txpool ----------------------------------------------------------------------

    def submit(self, label: str, raw: bytes) -> str:
        signed = decode_transaction(raw, chain_id=CHAIN_ID)
        assert isinstance(signed, SignedTransaction)
        tx = signed.tx
        if tx.nonce < self.count(signed.sender):
            raise NonceTooLow(label, "nonce too low", -32000)
        key = (signed.sender, tx.nonce)
        have = self.pool.get(key)
        if have is not None and have.hash == signed.hash:
            raise AlreadyKnown(label, "already known", -32000)
        if self.balance < tx.gas * tx.max_fee_per_gas:  # type: ignore[union-attr]
            raise InsufficientFunds(label, "insufficient funds for gas * price + value", -32000)
        if have is not None:
            old, new = _quote(have), _quote(signed)
            if not is_acceptable_replacement(old, new):
                raise ReplacementUnderpriced(label, "replacement transaction underpriced", -32000)
        self.pool[key] = signed
        self.sent.append(raw)
        return "0x" + signed.hash.hex()


def is_acceptable_replacement(old: FeeQuote, new: FeeQuote) -> bool:
    """geth legacypool ``list.Add`` (the fake pool's rule, and the tests' oracle for
    ``fees.bump``): both fee cap and tip strictly higher and >= +10%."""
    factor = 100 + REPLACEMENT_BUMP_PERCENT
    return (
        new.max_fee_per_gas > old.max_fee_per_gas
        and new.max_priority_fee_per_gas > old.max_priority_fee_per_gas
        and new.max_fee_per_gas >= old.max_fee_per_gas * factor // 100
        and new.max_priority_fee_per_gas >= old.max_priority_fee_per_gas * factor // 100
    )


def _quote(signed: SignedTransaction) -> FeeQuote:
    tx = signed.tx
    return FeeQuote(
        gas_limit=tx.gas,
        max_fee_per_gas=tx.max_fee_per_gas,  # type: ignore[union-attr]
        max_priority_fee_per_gas=tx.max_priority_fee_per_gas,  # type: ignore[union-attr]
    )


def _h(data: bytes) -> str:
    return "0x" + data.hex()


def tx_json(signed: SignedTransaction) -> dict[str, Any]:
    """A type-2 transaction as eth_getTransactionByHash renders it."""
    tx = signed.tx
    assert isinstance(tx, DynamicFeeTx)
    return {
        "type": "0x2",
        "chainId": hex(tx.chain_id),
        "nonce": hex(tx.nonce),
        "maxPriorityFeePerGas": hex(tx.max_priority_fee_per_gas),
        "maxFeePerGas": hex(tx.max_fee_per_gas),
        "gas": hex(tx.gas),
        "to": _h(tx.to) if tx.to else None,
        "value": hex(tx.value),
        "input": _h(tx.data),
        "accessList": [],
        "yParity": hex(signed.signature.y_parity),
        "v": hex(signed.signature.y_parity),
        "r": hex(signed.signature.r),
        "s": hex(signed.signature.s),
        "hash": _h(signed.hash),
        "from": _h(signed.sender),
    }


def block_json(b: Block, full: bool = False) -> dict[str, Any]:
    """The block as eth_getBlockByNumber answers (``full``: transaction objects)."""
    header = b.header()
    out: dict[str, Any] = {}
    for spec in HEADER_FIELDS:
        value = getattr(header, spec.attr)
        if value is not None:
            out[spec.rpc_name] = hex(value) if spec.shape == "int" else _h(value)
    out["hash"] = _h(header_hash(header))
    out["transactions"] = [tx_json(t) if full else _h(t.hash) for t in b.txs]
    return out


def receipts_json(b: Block) -> list[dict[str, Any]]:
    block_hash = _h(b.hash)
    return [
        {
            "type": hex(r.tx_type),
            "status": hex(r.status or 0),
            "cumulativeGasUsed": hex(r.cumulative_gas_used),
            "gasUsed": hex(GAS_PER_TX),
            "logsBloom": _h(r.logs_bloom),
            "logs": [],
            "transactionHash": _h(t.hash),
            "transactionIndex": hex(i),
            "blockHash": block_hash,
            "blockNumber": hex(b.number),
        }
        for i, (t, r) in enumerate(zip(b.txs, b.receipts(), strict=True))
    ]


@dataclass
class FakeEndpoint:
    """One endpoint over a FakeNet. ``down``: every call fails; ``stale_nonce``: the
    transaction count is reported this many lower; ``hook(method, params, answer)`` may
    rewrite any answer (or raise)."""

    label: str
    net: FakeNet
    down: bool = False
    stale_nonce: int = 0
    hook: Callable[[str, Sequence[Any], Any], Any] | None = None
    calls: list[str] = field(default_factory=list)

    def _height(self, tag: str) -> int:
        if tag in ("latest", "pending"):
            return self.net.head
        if tag in ("finalized", "safe"):
            return max(0, self.net.head - FINALITY_LAG)
        return int(tag, 16)

    def _block(self, ref: str) -> Block | None:
        """The block a number, tag or (66-character) block hash names; None: not here."""
        if len(ref) == 66:
            return next((b for b in self.net.blocks if _h(b.hash) == ref), None)
        height = self._height(ref)
        return self.net.blocks[height] if height <= self.net.head else None

    def call(self, method: str, params: Sequence[Any]) -> Any:
        self.calls.append(method)
        if self.down:
            raise EndpointUnavailable(self.label, "unreachable (ConnectionRefusedError)")
        answer = self._answer(method, params)
        if self.hook is not None:
            answer = self.hook(method, params, answer)
        return answer

    def _answer(self, method: str, params: Sequence[Any]) -> Any:
        net = self.net
        if method == "eth_chainId":
            return hex(CHAIN_ID)
        if method == "eth_blockNumber":
            return hex(net.head)
        if method == "eth_getBlockByNumber":
            height = self._height(params[0])
            full = len(params) > 1 and params[1] is True
            return block_json(net.blocks[height], full) if height <= net.head else None
        if method == "eth_getBlockReceipts":
            block = self._block(params[0])
            return None if block is None else receipts_json(block)
        if method == "eth_getTransactionCount":
            address = bytes.fromhex(params[0][2:])
            height = self._height(params[1])
            if height > net.head:
                raise NodeError(self.label, "header not found", -32000)
            return hex(max(0, net.count(address, height) - self.stale_nonce))
        if method == "eth_getBalance":
            return hex(net.balance)
        if method == "eth_sendRawTransaction":
            return net.submit(self.label, bytes.fromhex(params[0][2:]))
        if method == "eth_getTransactionReceipt":
            return net.receipt(bytes.fromhex(params[0][2:]))
        raise NodeError(self.label, f"method {method} not found", -32601)

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        if self.down:
            raise EndpointUnavailable(self.label, "unreachable (ConnectionRefusedError)")
        out: list[Any] = []
        for method, params in calls:
            try:
                out.append(self.call(method, params))
            except NodeError as exc:
                out.append(exc)
        return out
