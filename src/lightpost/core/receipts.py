"""Transaction receipts, logs and the 2048-bit logs bloom.

Spec: Yellow Paper 4.3.1, EIP-658 (status), EIP-2718 (typed: ``type || rlp(payload)``, legacy the
bare list); payload ``[status_or_root, cumulativeGasUsed, logsBloom, logs]``, log ``[address,
[topics...], data]``. ``receiptsRoot`` is the ordered trie of the encoded receipts
(:func:`receipts_root`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from lightpost.core import rlp
from lightpost.core.hashing import keccak256
from lightpost.core.l2 import DEPOSIT_TX_TYPE
from lightpost.core.rpcfields import (
    data_field,
    get_field,
    get_list,
    get_object,
    optional_field,
    parse_data,
    parse_quantity,
    quantity_field,
)
from lightpost.core.trie import ordered_trie_root
from lightpost.errors import DecodingError, ProofError

__all__ = [
    "BLOOM_BYTES",
    "RECEIPT_TYPES",
    "Log",
    "Receipt",
    "block_logs_bloom",
    "check_logs_bloom",
    "decode_receipt",
    "encode_receipt",
    "logs_bloom",
    "receipt_from_rpc",
    "receipts_root",
    "verify_receipts_root",
]

BLOOM_BYTES = 256
"""The logs bloom is a 2048-bit filter (Yellow Paper section 4.3.1)."""

BLOOM_BITS = BLOOM_BYTES * 8
"""Number of bits in the logs bloom."""

BLOOM_HASH_PAIRS = (0, 2, 4)
"""M3:2048 sets one bit per byte pair (0,1), (2,3), (4,5) of keccak256(x) (YP 4.3.1)."""

RECEIPT_TYPES = frozenset({0, 1, 2, 3, 4})
"""Known receipt types: legacy 0, EIP-2930 1, EIP-1559 2, EIP-4844 3, EIP-7702 4."""

LEGACY_TYPE = 0
"""Legacy receipts carry no type byte (EIP-2718)."""

TYPED_PREFIX_LIMIT = 0x7F
"""EIP-2718: a first byte <= 0x7f is a type; legacy RLP lists start at >= 0xc0."""

MAX_TOPICS = 4
"""LOG0..LOG4: a log carries at most four topics (Yellow Paper section 9.4.10)."""

ADDRESS_BYTES = 20
"""Length of an account address (Yellow Paper section 4.1)."""

WORD_BYTES = 32
"""Length of a topic and of a pre-Byzantium intermediate state root."""

STATUS_VALUES = frozenset({0, 1})
"""EIP-658: status is 1 for success, 0 for failure."""

U64_MAX = 2**64 - 1
"""op-geth: depositNonce and depositReceiptVersion are uint64."""

_RECEIPT_FIELDS = 4
"""[status_or_root, cumulativeGasUsed, logsBloom, logs]."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Log:
    """One log entry: emitting ``address``, up to four 32-byte ``topics`` and ``data``."""

    address: bytes
    topics: tuple[bytes, ...]
    data: bytes

    def __post_init__(self) -> None:
        if len(self.address) != ADDRESS_BYTES:
            raise DecodingError("log", f"address must be 20 bytes, got {len(self.address)}")
        if len(self.topics) > MAX_TOPICS:
            raise DecodingError("log", f"{len(self.topics)} topics (at most {MAX_TOPICS})")
        if any(len(t) != WORD_BYTES for t in self.topics):
            raise DecodingError("log", "every topic must be 32 bytes")


@dataclass(frozen=True, slots=True, kw_only=True)
class Receipt:
    """A receipt as ``receiptsRoot`` commits to it: exactly one of ``status`` (EIP-658) and
    ``post_state`` (pre-Byzantium 32-byte root) is set; ``deposit_*`` only on OP-stack deposit
    (0x7e) receipts: the nonce since Regolith, the version since Canyon."""

    tx_type: int
    cumulative_gas_used: int
    logs_bloom: bytes
    logs: tuple[Log, ...]
    status: int | None = None
    post_state: bytes | None = None
    deposit_nonce: int | None = None
    deposit_receipt_version: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.tx_type <= TYPED_PREFIX_LIMIT:
            raise DecodingError("receipt", f"unknown receipt type {self.tx_type}")
        deposit = (self.deposit_nonce, self.deposit_receipt_version)
        if deposit != (None, None) and self.tx_type != DEPOSIT_TX_TYPE:
            raise DecodingError("receipt", "only deposit receipts carry a deposit nonce")
        if self.deposit_nonce is None and self.deposit_receipt_version is not None:
            raise DecodingError("receipt", "a deposit receipt version needs a deposit nonce")
        if any(v is not None and not 0 <= v <= U64_MAX for v in deposit):
            raise DecodingError("receipt", "deposit nonce and version are u64")
        if (self.status is None) == (self.post_state is None):
            raise DecodingError("receipt", "exactly one of status and post_state must be set")
        if self.status is not None and self.status not in STATUS_VALUES:
            raise DecodingError("receipt", f"status must be 0 or 1, got {self.status}")
        if self.post_state is not None:
            if len(self.post_state) != WORD_BYTES:
                raise DecodingError("receipt", "post-state root must be 32 bytes")
            if self.tx_type != LEGACY_TYPE:
                raise DecodingError("receipt", "typed receipts carry a status, not a state root")
        if self.cumulative_gas_used < 0:
            raise DecodingError("receipt", "cumulative gas used must be non-negative")
        if len(self.logs_bloom) != BLOOM_BYTES:
            raise DecodingError("receipt", f"logs bloom must be {BLOOM_BYTES} bytes")


# --- bloom ---


def _bloom_add(bloom: bytearray, item: bytes) -> None:
    digest = keccak256(item)
    for i in BLOOM_HASH_PAIRS:
        bit = ((digest[i] << 8) | digest[i + 1]) % BLOOM_BITS
        # Bit 0 is the lowest bit of the last byte: the bloom is a big-endian integer.
        bloom[BLOOM_BYTES - 1 - bit // 8] |= 1 << (bit % 8)


def logs_bloom(logs: Sequence[Log]) -> bytes:
    """The 256-byte bloom of ``logs``: each address and each topic is added (YP 4.3.1)."""
    bloom = bytearray(BLOOM_BYTES)
    for log in logs:
        _bloom_add(bloom, log.address)
        for topic in log.topics:
            _bloom_add(bloom, topic)
    return bytes(bloom)


def check_logs_bloom(receipt: Receipt) -> None:
    """Raise :class:`ProofError` (kind ``logsBloom``) unless the bloom matches the logs."""
    if logs_bloom(receipt.logs) != receipt.logs_bloom:
        raise ProofError("logsBloom", "receipt bloom differs from the bloom of its logs")


def block_logs_bloom(receipts: Sequence[Receipt]) -> bytes:
    """The header's ``logsBloom``: the bitwise OR of every receipt's bloom."""
    combined = 0
    for receipt in receipts:
        combined |= int.from_bytes(receipt.logs_bloom, "big")
    return combined.to_bytes(BLOOM_BYTES, "big")


# --- encoding ---


def encode_receipt(receipt: Receipt) -> bytes:
    """Consensus encoding: rlp(payload) for legacy, ``type || rlp(payload)`` otherwise. A deposit
    receipt appends [depositNonce, depositReceiptVersion] only when the version is set (Canyon);
    before, the trie form omits the nonce (op-geth core/types/receipt.go Receipts.EncodeIndex)."""
    first: bytes | int = (
        receipt.post_state if receipt.post_state is not None else receipt.status or 0
    )
    fields: list[object] = [
        first,
        receipt.cumulative_gas_used,
        receipt.logs_bloom,
        [[log.address, list(log.topics), log.data] for log in receipt.logs],
    ]
    # op-geth@7b56c731573a32af0beedc5f38dbe7ca9d96630a core/types/receipt.go EncodeIndex: the
    # depositReceiptRLP form only when DepositReceiptVersion is set (op-specs deposits.md, Canyon)
    if receipt.deposit_receipt_version is not None:
        fields += [receipt.deposit_nonce, receipt.deposit_receipt_version]
    payload = rlp.encode(fields)
    if receipt.tx_type == LEGACY_TYPE:
        return payload
    return bytes([receipt.tx_type]) + payload


def _string(item: rlp.Item, what: str) -> bytes:
    if not isinstance(item, bytes):
        raise DecodingError("receipt", f"{what} must be a string, not a list")
    return item


def _decode_log(item: rlp.Item) -> Log:
    if not isinstance(item, list) or len(item) != 3:
        raise DecodingError("log", "expected an RLP list of 3 items")
    address, topics, data = item
    if not isinstance(topics, list):
        raise DecodingError("log", "topics must be a list")
    return Log(
        address=_string(address, "log address"),
        topics=tuple(_string(t, "topic") for t in topics),
        data=_string(data, "log data"),
    )


def decode_receipt(encoded: bytes, *, types: Collection[int] = RECEIPT_TYPES) -> Receipt:
    """Decode a consensus-encoded receipt (as ``debug_getRawReceipts`` returns) of one of
    ``types``; a deposit receipt may carry a nonce (5 items, Regolith) and version (6, Canyon)."""
    if not encoded:
        raise DecodingError("receipt", "empty input")
    tx_type = LEGACY_TYPE
    body = encoded
    if encoded[0] <= TYPED_PREFIX_LIMIT:
        tx_type, body = encoded[0], encoded[1:]
        if tx_type == LEGACY_TYPE or tx_type not in types:
            raise DecodingError("receipt", f"unknown receipt type {tx_type}")
    item = rlp.decode(body)
    extra = 2 if tx_type == DEPOSIT_TX_TYPE else 0
    if not isinstance(item, list) or not _RECEIPT_FIELDS <= len(item) <= _RECEIPT_FIELDS + extra:
        raise DecodingError("receipt", "expected an RLP list of 4 items")
    first, cumulative, bloom, logs = item[:_RECEIPT_FIELDS]
    tail = [rlp.decode_int(_string(v, "deposit field"), what="deposit field") for v in item[4:]]
    first_bytes = _string(first, "status")
    if not isinstance(logs, list):
        raise DecodingError("receipt", "logs must be a list")
    status: int | None = None
    post_state: bytes | None = None
    if len(first_bytes) == WORD_BYTES:
        post_state = first_bytes
    else:
        status = rlp.decode_int(first_bytes, what="status")
    return Receipt(
        tx_type=tx_type,
        status=status,
        post_state=post_state,
        cumulative_gas_used=rlp.decode_int(_string(cumulative, "gas"), what="cumulative gas"),
        logs_bloom=_string(bloom, "bloom"),
        logs=tuple(_decode_log(log) for log in logs),
        deposit_nonce=tail[0] if tail else None,
        deposit_receipt_version=tail[1] if len(tail) > 1 else None,
    )


# --- JSON-RPC ---


def _log_from_rpc(value: object, what: str) -> Log:
    obj = get_object(value, what)
    topics = get_list(get_field(obj, "topics", what), f"{what}.topics")
    return Log(
        address=data_field(obj, "address", what, ADDRESS_BYTES),
        topics=tuple(
            parse_data(t, f"{what}.topics[{i}]", WORD_BYTES) for i, t in enumerate(topics)
        ),
        data=data_field(obj, "data", what),
    )


def _optional_quantity(obj: Mapping[str, object], name: str, what: str) -> int | None:
    value = optional_field(obj, name)
    return None if value is None else parse_quantity(value, f"{what}.{name}")


def receipt_from_rpc(obj: object, *, types: Collection[int] = RECEIPT_TYPES) -> Receipt:
    """A :class:`Receipt` from an ``eth_getTransactionReceipt`` / ``eth_getBlockReceipts`` object
    of one of ``types``: no ``type`` is legacy; a non-empty pre-Byzantium ``root`` wins over
    ``status`` (the root check catches mix-ups); a deposit's ``depositNonce`` and
    ``depositReceiptVersion`` are read; other fields (gasUsedForL1, l1Fee...) are not consensus
    data and are ignored."""
    what = "receipt"
    receipt = get_object(obj, what)
    type_value = optional_field(receipt, "type")
    tx_type = LEGACY_TYPE if type_value is None else parse_quantity(type_value, f"{what}.type")
    if tx_type != LEGACY_TYPE and tx_type not in types:
        raise DecodingError(what, f"unknown receipt type {tx_type}")
    deposit = tx_type == DEPOSIT_TX_TYPE
    root_value = optional_field(receipt, "root")
    post_state = parse_data(root_value, f"{what}.root") if root_value is not None else b""
    status: int | None = None
    if post_state:
        if len(post_state) != WORD_BYTES:
            raise DecodingError(what, "root must be 32 bytes")
    else:
        status = quantity_field(receipt, "status", what)
    logs = get_list(get_field(receipt, "logs", what), f"{what}.logs")
    return Receipt(
        tx_type=tx_type,
        status=status,
        post_state=post_state or None,
        cumulative_gas_used=quantity_field(receipt, "cumulativeGasUsed", what),
        logs_bloom=data_field(receipt, "logsBloom", what, BLOOM_BYTES),
        logs=tuple(_log_from_rpc(log, f"{what}.logs[{i}]") for i, log in enumerate(logs)),
        deposit_nonce=_optional_quantity(receipt, "depositNonce", what) if deposit else None,
        deposit_receipt_version=(
            _optional_quantity(receipt, "depositReceiptVersion", what) if deposit else None
        ),
    )


def receipts_root(receipts: Sequence[Receipt]) -> bytes:
    """The ``receiptsRoot`` committing to ``receipts`` in block order."""
    return ordered_trie_root([encode_receipt(r) for r in receipts])


def verify_receipts_root(expected_root: bytes, receipts: Sequence[Receipt]) -> None:
    """Check every receipt's bloom and that ``receipts`` rebuild ``expected_root``
    (:class:`ProofError` ``logsBloom`` / ``receiptsRoot``)."""
    for receipt in receipts:
        check_logs_bloom(receipt)
    if receipts_root(receipts) != expected_root:
        raise ProofError("receiptsRoot", "receipts do not rebuild the header's receiptsRoot")
