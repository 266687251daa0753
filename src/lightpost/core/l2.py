"""L2 transaction types, receipts and header fields, per chain: OP-stack deposits and Arbitrum.

Each encoding is ``type || rlp([fields])`` (EIP-2718) and its hash keccak256 of that, so a block's
list rebuilds its transactionsRoot. Sources: op-geth core/types/deposit_tx.go (DepositTx) and
receipt.go (Receipts.EncodeIndex); OffchainLabs/go-ethereum core/types/arb_types.go,
transaction.go (type bytes), transaction_marshalling.go (JSON keys), receipt.go (EncodeIndex:
Arbitrum receipts are the plain 4-field payload; gasUsedForL1 is storage-only). Which types a
chain has is a parameter (:class:`BlockFormat`); :data:`ETHEREUM` (the default) adds none.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lightpost.core import rlp, rpcfields
from lightpost.core.hashing import keccak256
from lightpost.core.header import BlockHeader
from lightpost.core.tx import MAX_TX_TYPE, SET_CODE_TX_TYPE, ForeignTransaction
from lightpost.errors import ConfigError, DecodingError, ProofError

__all__ = [
    "ARBITRUM",
    "ARBITRUM_HEADER_FIELDS",
    "ARBITRUM_LEGACY_TX_TYPE",
    "ARBITRUM_TX_TYPES",
    "DEPOSIT_TX_TYPE",
    "ETHEREUM",
    "L2_TX_FIELDS",
    "OP_STACK",
    "OP_STACK_TX_TYPES",
    "BlockFormat",
    "check_header_fields",
    "decode_l2_transaction",
    "encode_l2_transaction",
    "l2_transaction_from_rpc",
    "prove_foreign_raw",
    "unknown_indexes",
    "unsupported_reason",
]

DEPOSIT_TX_TYPE = 0x7E
"""OP-stack deposit transaction (op-specs deposits.md; op-geth DepositTxType)."""

OP_STACK_TX_TYPES = frozenset({DEPOSIT_TX_TYPE})
"""Types an OP-stack chain (OP mainnet, Base) adds to Ethereum's."""

ARBITRUM_DEPOSIT_TX_TYPE = 0x64
ARBITRUM_UNSIGNED_TX_TYPE = 0x65
ARBITRUM_CONTRACT_TX_TYPE = 0x66
ARBITRUM_RETRY_TX_TYPE = 0x68
ARBITRUM_SUBMIT_RETRYABLE_TX_TYPE = 0x69
ARBITRUM_INTERNAL_TX_TYPE = 0x6A

ARBITRUM_LEGACY_TX_TYPE = 0x78
"""Arbitrum classic (pre-Nitro) wrapper: its hash is a stored override, not keccak of its bytes,
so it cannot be proven and is always refused (OffchainLabs/go-ethereum Transaction.Hash)."""

ARBITRUM_TX_TYPES = frozenset(
    {
        ARBITRUM_DEPOSIT_TX_TYPE,
        ARBITRUM_UNSIGNED_TX_TYPE,
        ARBITRUM_CONTRACT_TX_TYPE,
        ARBITRUM_RETRY_TX_TYPE,
        ARBITRUM_SUBMIT_RETRYABLE_TX_TYPE,
        ARBITRUM_INTERNAL_TX_TYPE,
    }
)
"""Types Arbitrum One (Nitro) adds (OffchainLabs/go-ethereum core/types/transaction.go)."""

ARBITRUM_HEADER_FIELDS = frozenset({"l1BlockNumber", "sendCount", "sendRoot"})
"""Nitro's extra eth_getBlockBy* keys: not hashed themselves, but derived from extraData and
mixHash (arb_types.go HeaderInfo), so :func:`check_header_fields` checks them against both."""

_SEND_COUNT = slice(0, 8)
"""HeaderInfo.mixDigest: sendCount is big-endian in mixHash[0:8]."""

_L1_BLOCK_NUMBER = slice(8, 16)
"""HeaderInfo.mixDigest: l1BlockNumber is big-endian in mixHash[8:16]."""

# Field kinds: how a value is range-checked and RLP-coded.
_H32, _ADDR, _TO, _U64, _U256, _BOOL, _BYTES = "h32", "addr", "to", "u64", "u256", "bool", "bytes"
_SIZES = {_H32: 32, _ADDR: 20}
_MAX = {_U64: 2**64 - 1, _U256: 2**256 - 1, _BOOL: 1}

_FEE_CAP = ("maxFeePerGas", _U256)
_TAIL = (("gas", _U64), ("to", _TO), ("value", _U256), ("input", _BYTES))

L2_TX_FIELDS: Mapping[int, tuple[tuple[str, str], ...]] = {
    # op-geth DepositTx: SourceHash, From, To (nil: create), Mint (nil = 0), Value, Gas,
    # IsSystemTransaction, Data.
    DEPOSIT_TX_TYPE: (
        ("sourceHash", _H32),
        ("from", _ADDR),
        ("to", _TO),
        ("mint", _U256),
        ("value", _U256),
        ("gas", _U64),
        ("isSystemTx", _BOOL),
        ("input", _BYTES),
    ),
    # arb_types.go ArbitrumDepositTx: ChainId, L1RequestId, From, To (never nil), Value.
    ARBITRUM_DEPOSIT_TX_TYPE: (
        ("chainId", _U256),
        ("requestId", _H32),
        ("from", _ADDR),
        ("to", _ADDR),
        ("value", _U256),
    ),
    # ArbitrumUnsignedTx: ChainId, From, Nonce, GasFeeCap, Gas, To, Value, Data.
    ARBITRUM_UNSIGNED_TX_TYPE: (
        ("chainId", _U256),
        ("from", _ADDR),
        ("nonce", _U64),
        _FEE_CAP,
        *_TAIL,
    ),
    # ArbitrumContractTx: ChainId, RequestId, From, GasFeeCap, Gas, To, Value, Data.
    ARBITRUM_CONTRACT_TX_TYPE: (
        ("chainId", _U256),
        ("requestId", _H32),
        ("from", _ADDR),
        _FEE_CAP,
        *_TAIL,
    ),
    # ArbitrumRetryTx: ChainId, Nonce, From, GasFeeCap, Gas, To, Value, Data, TicketId,
    # RefundTo, MaxRefund, SubmissionFeeRefund.
    ARBITRUM_RETRY_TX_TYPE: (
        ("chainId", _U256),
        ("nonce", _U64),
        ("from", _ADDR),
        _FEE_CAP,
        *_TAIL,
        ("ticketId", _H32),
        ("refundTo", _ADDR),
        ("maxRefund", _U256),
        ("submissionFeeRefund", _U256),
    ),
    # ArbitrumSubmitRetryableTx: ChainId, RequestId, From, L1BaseFee, DepositValue, GasFeeCap,
    # Gas, RetryTo, RetryValue, Beneficiary, MaxSubmissionFee, FeeRefundAddr (JSON refundTo),
    # RetryData. Its JSON "input" is derived from these and not encoded.
    ARBITRUM_SUBMIT_RETRYABLE_TX_TYPE: (
        ("chainId", _U256),
        ("requestId", _H32),
        ("from", _ADDR),
        ("l1BaseFee", _U256),
        ("depositValue", _U256),
        _FEE_CAP,
        ("gas", _U64),
        ("retryTo", _TO),
        ("retryValue", _U256),
        ("beneficiary", _ADDR),
        ("maxSubmissionFee", _U256),
        ("refundTo", _ADDR),
        ("retryData", _BYTES),
    ),
    # ArbitrumInternalTx: ChainId, Data.
    ARBITRUM_INTERNAL_TX_TYPE: (("chainId", _U256), ("input", _BYTES)),
}
"""Each L2 type's fields in RLP order: (JSON-RPC key, kind)."""

_OPTIONAL_ZERO = frozenset({"mint", "isSystemTx"})
"""op-geth omits ``isSystemTx`` when false and ``mint`` when nil (encoded like 0)."""

_WHAT = "l2 transaction"
_KNOWN_NAMES = {
    DEPOSIT_TX_TYPE: "OP-stack deposit",
    ARBITRUM_LEGACY_TX_TYPE: "Arbitrum classic legacy",
    **{t: "Arbitrum" for t in ARBITRUM_TX_TYPES},
}


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockFormat:
    """What a chain's blocks may hold beyond Ethereum's: extra transaction (and receipt) types
    and extra header JSON keys. Wired from the chain profile; the default adds nothing."""

    tx_types: frozenset[int] = frozenset()
    header_fields: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        unknown = set(self.tx_types) - set(L2_TX_FIELDS)
        if unknown:
            raise ConfigError(f"no encoding for transaction type(s) {sorted(unknown)}")


ETHEREUM = BlockFormat()
"""Ethereum L1 and the devnet: types 0-4, standard header keys only."""

OP_STACK = BlockFormat(tx_types=OP_STACK_TX_TYPES)
"""OP mainnet, Base and other OP-stack chains."""

ARBITRUM = BlockFormat(tx_types=ARBITRUM_TX_TYPES, header_fields=ARBITRUM_HEADER_FIELDS)
"""Arbitrum One (Nitro blocks)."""


def _fail(reason: str) -> DecodingError:
    return DecodingError(_WHAT, reason)


def _check(kind: str, value: object, key: str) -> None:
    if kind in _MAX:
        ok = isinstance(value, int) and 0 <= value <= _MAX[kind]
        if kind != _BOOL and isinstance(value, bool):
            ok = False
    elif kind == _TO and value is None:
        ok = True
    else:
        size = _SIZES.get(kind, _SIZES[_ADDR] if kind == _TO else None)
        ok = isinstance(value, bytes) and (size is None or len(value) == size)
    if not ok:
        raise _fail(f"{key} is not a valid {kind}")


def encode_l2_transaction(tx_type: int, values: Mapping[str, Any]) -> bytes:
    """``tx_type || rlp([fields in L2_TX_FIELDS order])``; ``to`` None is the empty string."""
    spec = L2_TX_FIELDS.get(tx_type)
    if spec is None:
        raise _fail(f"no encoding for type 0x{tx_type:02x}")
    items: list[object] = []
    for key, kind in spec:
        value = values[key]
        _check(kind, value, key)
        items.append(b"" if value is None else int(value) if kind == _BOOL else value)
    return bytes([tx_type]) + rlp.encode(items)


def decode_l2_transaction(raw: bytes) -> tuple[int, dict[str, Any]]:
    """Inverse of :func:`encode_l2_transaction`: (type, values); strict (canonical RLP, ranges)."""
    if not raw or raw[0] not in L2_TX_FIELDS:
        raise _fail("not an L2 transaction type")
    spec = L2_TX_FIELDS[raw[0]]
    items = rlp.decode(raw[1:])
    if not isinstance(items, list) or len(items) != len(spec):
        raise _fail(f"type 0x{raw[0]:02x} needs an RLP list of {len(spec)} items")
    values: dict[str, Any] = {}
    for (key, kind), item in zip(spec, items, strict=True):
        if not isinstance(item, bytes):
            raise _fail(f"{key} must be a string, not a list")
        value: Any = item
        if kind in _MAX:
            value = rlp.decode_int(item, what=key)
            value = bool(value) if kind == _BOOL and value <= 1 else value
        elif kind == _TO and item == b"":
            value = None
        _check(kind, value, key)
        values[key] = value
    if encode_l2_transaction(raw[0], values) != raw:
        raise _fail("not the canonical encoding")
    return raw[0], values


def _rpc_value(obj: Mapping[str, Any], key: str, kind: str) -> Any:
    what = f"rpc transaction.{key}"
    value = obj.get(key)
    if value is None:
        if kind == _TO or key in _OPTIONAL_ZERO:
            return False if kind == _BOOL else (None if kind == _TO else 0)
        raise DecodingError("rpc transaction", f"missing field {key!r}")
    if kind == _BOOL:
        if not isinstance(value, bool):
            raise DecodingError(what, "expected true or false")
        return value
    if kind in _MAX:
        return rpcfields.parse_quantity(value, what)
    return rpcfields.parse_data(value, what, _SIZES.get(kind, 20 if kind == _TO else None))


def l2_transaction_from_rpc(obj: Mapping[str, Any]) -> ForeignTransaction:
    """Rebuild an L2 transaction from its JSON-RPC object (``hash`` not read: the caller compares,
    as for every type)."""
    tx_type = rpcfields.quantity_field(obj, "type", "rpc transaction")
    spec = L2_TX_FIELDS.get(tx_type)
    if spec is None:
        raise _fail(f"no encoding for type 0x{tx_type:02x}")
    raw = encode_l2_transaction(tx_type, {k: _rpc_value(obj, k, kind) for k, kind in spec})
    return ForeignTransaction(type=tx_type, raw=raw, hash=keccak256(raw))


def unknown_indexes(transactions_json: Sequence[object], fmt: BlockFormat) -> list[int]:
    """Where a block's JSON lists a type with no encoding here (not 0-4, not ``fmt``'s): the
    transactions only a raw form can prove. Malformed entries are left to the proof to refuse."""
    out = []
    for i, obj in enumerate(transactions_json):
        kind = obj.get("type") if isinstance(obj, Mapping) else None
        try:
            tx_type = rpcfields.parse_quantity(kind, "type") if kind is not None else 0
        except DecodingError:
            continue
        if tx_type > SET_CODE_TX_TYPE and tx_type not in fmt.tx_types:
            out.append(i)
    return out


def unsupported_reason(tx_type: int, block_number: int, index: int) -> str:
    """The refusal for a type this chain's format does not encode and no raw form proves."""
    name = _KNOWN_NAMES.get(tx_type)
    why = "its hash is not derived from its bytes" if tx_type == ARBITRUM_LEGACY_TX_TYPE else None
    hint = f" ({name}; {why or 'not enabled for this chain'})" if name else ""
    return (
        f"transaction {index}: type 0x{tx_type:02x}{hint} in block {block_number} not supported;"
        " the endpoint serves no raw form"
    )


def prove_foreign_raw(raw: bytes, claimed: ForeignTransaction) -> ForeignTransaction:
    """An unknown type's transaction from its raw form (eth_getRawTransactionByBlockHashAndIndex):
    it must carry the listed type and hash to the hash the block lists, else ProofError."""
    if not raw or raw[0] != claimed.type or raw[0] > MAX_TX_TYPE:
        raise ProofError("transactionsRoot", "raw form is not of the listed transaction type")
    if keccak256(raw) != claimed.hash:
        raise ProofError("transactionsRoot", "raw form does not hash to the listed hash")
    return ForeignTransaction(type=raw[0], raw=raw, hash=claimed.hash)


def check_header_fields(
    block: Mapping[str, object], header: BlockHeader, allowed: Collection[str]
) -> None:
    """Arbitrum's extra keys, where allowed and present, must equal what the hashed header
    encodes: sendRoot = extraData, sendCount = mixHash[0:8], l1BlockNumber = mixHash[8:16]
    (arb_types.go HeaderInfo). ProofError (``header``) otherwise."""
    derived: dict[str, object] = {
        "sendRoot": header.extra_data,
        "sendCount": int.from_bytes(header.mix_hash[_SEND_COUNT], "big"),
        "l1BlockNumber": int.from_bytes(header.mix_hash[_L1_BLOCK_NUMBER], "big"),
    }
    for key in sorted(set(allowed) & set(block) & set(derived)):
        value = block[key]
        claimed: object = (
            rpcfields.parse_data(value, f"header.{key}", 32)
            if key == "sendRoot"
            else rpcfields.parse_quantity(value, f"header.{key}")
        )
        if claimed != derived[key]:
            raise ProofError("header", f"{key} disagrees with what the block hash covers")
