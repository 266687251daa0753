"""L2 transaction types and header keys per chain (:class:`BlockFormat`): OP-stack deposits,
Arbitrum Nitro. Each is ``type || rlp(fields)`` hashed with keccak256 (EIP-2718). Arbitrum
receipts are the plain typed payload (gasUsedForL1 is storage-only: OffchainLabs/go-ethereum
core/types/receipt.go Receipts.EncodeIndex); deposit receipts: lightpost.core.receipts."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lightpost.core import rlp, rpcfields
from lightpost.core.hashing import keccak256
from lightpost.core.header import BlockHeader
from lightpost.core.tx import SET_CODE_TX_TYPE, ForeignTransaction
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
    "block_format",
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

ARBITRUM_LEGACY_TX_TYPE = 0x78
"""Arbitrum classic wrapper: its hash is a stored override, not keccak of its bytes (go-ethereum
fork's Transaction.Hash), so it is never provable and always refused."""

_SPECS = {
    # op-geth core/types/deposit_tx.go DepositTx (To nil: create; Mint nil encodes as 0), read at
    # ethereum-optimism/op-geth@7b56c731573a32af0beedc5f38dbe7ca9d96630a
    DEPOSIT_TX_TYPE: "sourceHash:h32 from:addr to:to mint:u256 value:u256 gas:u64"
    " isSystemTx:bool input:bytes",
    # OffchainLabs/go-ethereum core/types/arb_types.go, struct order; JSON keys from
    # transaction_marshalling.go (GasFeeCap is maxFeePerGas, FeeRefundAddr is refundTo); read at
    # OffchainLabs/go-ethereum@49b38a638a91f91f0fdb8be5f740c69f8d6abefc
    0x64: "chainId:u256 requestId:h32 from:addr to:addr value:u256",  # ArbitrumDepositTx
    0x65: "chainId:u256 from:addr nonce:u64 maxFeePerGas:u256 gas:u64 to:to value:u256"
    " input:bytes",  # ArbitrumUnsignedTx
    0x66: "chainId:u256 requestId:h32 from:addr maxFeePerGas:u256 gas:u64 to:to value:u256"
    " input:bytes",  # ArbitrumContractTx
    0x68: "chainId:u256 nonce:u64 from:addr maxFeePerGas:u256 gas:u64 to:to value:u256"
    " input:bytes ticketId:h32 refundTo:addr maxRefund:u256 submissionFeeRefund:u256",  # Retry
    0x69: "chainId:u256 requestId:h32 from:addr l1BaseFee:u256 depositValue:u256"
    " maxFeePerGas:u256 gas:u64 retryTo:to retryValue:u256 beneficiary:addr"
    " maxSubmissionFee:u256 refundTo:addr retryData:bytes",  # SubmitRetryable (input derived)
    0x6A: "chainId:u256 input:bytes",  # ArbitrumInternalTx
}

L2_TX_FIELDS: Mapping[int, tuple[tuple[str, str], ...]] = {
    t: tuple((f.split(":")[0], f.split(":")[1]) for f in spec.split()) for t, spec in _SPECS.items()
}
"""Each L2 type's fields in RLP order: (JSON-RPC key, kind)."""

ARBITRUM_TX_TYPES = frozenset(L2_TX_FIELDS) - OP_STACK_TX_TYPES
"""Types Arbitrum One (Nitro) adds: 0x64-0x66, 0x68-0x6a (go-ethereum fork transaction.go)."""

ARBITRUM_HEADER_FIELDS = frozenset({"l1BlockNumber", "sendCount", "sendRoot"})
"""Nitro's extra eth_getBlockBy* keys, derived from extraData and mixHash (arb_types.go
HeaderInfo) and checked against them by :func:`check_header_fields`."""

_SEND_COUNT, _L1_BLOCK_NUMBER = slice(0, 8), slice(8, 16)
"""HeaderInfo.mixDigest: big-endian sendCount in mixHash[0:8], l1BlockNumber in [8:16]."""

_H32, _ADDR, _TO, _U64, _U256, _BOOL = "h32", "addr", "to", "u64", "u256", "bool"
_SIZES = {_H32: 32, _ADDR: 20, _TO: 20}
_MAX = {_U64: 2**64 - 1, _U256: 2**256 - 1, _BOOL: 1}

_OPTIONAL_ZERO = frozenset({"mint", "isSystemTx"})
"""op-geth omits ``isSystemTx`` when false and ``mint`` when nil (encoded like 0)."""

_WHAT = "l2 transaction"
_NAMES = {DEPOSIT_TX_TYPE: "OP-stack deposit", ARBITRUM_LEGACY_TX_TYPE: "Arbitrum classic legacy"}


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockFormat:
    """A chain's extra transaction (and receipt) types and header JSON keys (from its profile)."""

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


def block_format(tx_types: frozenset[int], header_fields: frozenset[str]) -> BlockFormat:
    """A profile's expected types and header keys as a BlockFormat: the types lightpost encodes
    beyond 0-4; any other type is proven from an endpoint's raw form or refused (verify)."""
    return BlockFormat(tx_types=tx_types & set(L2_TX_FIELDS), header_fields=header_fields)


def _fail(reason: str) -> DecodingError:
    return DecodingError(_WHAT, reason)


def _check(kind: str, value: object, key: str) -> None:
    if kind in _MAX:
        ok = isinstance(value, int) and 0 <= value <= _MAX[kind]
        ok = ok and (kind == _BOOL or not isinstance(value, bool))
    else:
        size = _SIZES.get(kind)
        ok = (kind == _TO and value is None) or (
            isinstance(value, bytes) and size in (None, len(value))
        )
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
    return rpcfields.parse_data(value, what, _SIZES.get(kind))


def l2_transaction_from_rpc(obj: Mapping[str, Any]) -> ForeignTransaction:
    """An L2 transaction from its JSON-RPC object (``hash`` unchecked, as for every type)."""
    tx_type = rpcfields.quantity_field(obj, "type", "rpc transaction")
    spec = L2_TX_FIELDS.get(tx_type)
    if spec is None:
        raise _fail(f"no encoding for type 0x{tx_type:02x}")
    raw = encode_l2_transaction(tx_type, {k: _rpc_value(obj, k, kind) for k, kind in spec})
    return ForeignTransaction(type=tx_type, raw=raw, hash=keccak256(raw))


def unknown_indexes(transactions_json: Sequence[object], fmt: BlockFormat) -> list[int]:
    """Indexes of a block's transactions of a type with no encoding here (not 0-4 nor ``fmt``'s)."""
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
    """Why a type no format encodes and no raw form proves is refused."""
    name = _NAMES.get(tx_type, "Arbitrum" if tx_type in ARBITRUM_TX_TYPES else None)
    why = "its hash is not derived from its bytes" if tx_type == ARBITRUM_LEGACY_TX_TYPE else None
    hint = f" ({name}; {why or 'not enabled for this chain'})" if name else ""
    return (
        f"transaction {index}: type 0x{tx_type:02x}{hint} in block {block_number} not supported;"
        " the endpoint serves no raw form"
    )


def prove_foreign_raw(raw: bytes, claimed: ForeignTransaction) -> ForeignTransaction:
    """An unknown type's transaction from its raw form: listed type and hash, else ProofError."""
    if raw[:1] != bytes([claimed.type]):
        raise ProofError("transactionsRoot", "raw form is not of the listed transaction type")
    if keccak256(raw) != claimed.hash:
        raise ProofError("transactionsRoot", "raw form does not hash to the listed hash")
    return ForeignTransaction(type=raw[0], raw=raw, hash=claimed.hash)


def check_header_fields(
    block: Mapping[str, object], header: BlockHeader, allowed: Collection[str]
) -> None:
    """Arbitrum's keys, where allowed and present, must equal what the hash covers (ProofError)."""
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
