"""Block headers: every field through Prague, RLP encoding, hash and verification.

Spec: Yellow Paper 4.3; EIP-1559 ``baseFeePerGas``, EIP-4895 ``withdrawalsRoot``, EIP-4844
``blobGasUsed``/``excessBlobGas``, EIP-4788 ``parentBeaconBlockRoot``, EIP-7685 ``requestsHash``.
Hash = ``keccak256(rlp(header))``; a trailing field is encoded only when it and every earlier one is
set. Fail closed: :func:`header_from_rpc` refuses an unknown key (ignoring a newer fork's field
could "verify" a header missing a committed one); L2s pass ``extra_allowed``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Literal

from lightpost.core import rlp
from lightpost.core.hashing import keccak256
from lightpost.core.rpcfields import data_field, get_object, quantity_field
from lightpost.errors import DecodingError, ProofError

__all__ = [
    "HEADER_FIELDS",
    "LEGACY_FIELD_COUNT",
    "NON_HEADER_RPC_FIELDS",
    "BlockHeader",
    "HeaderField",
    "decode_header",
    "encode_header",
    "header_from_rpc",
    "header_hash",
    "verify_header",
]

_WHAT = "header"
"""Structure name used in decoding errors."""

HASH_BYTES = 32
"""Length of a keccak256 digest, the block hash included."""


@dataclass(frozen=True, slots=True)
class HeaderField:
    """One header field: attribute name, JSON-RPC name, shape and fixed length."""

    attr: str
    rpc_name: str
    shape: Literal["int", "bytes"]
    length: int | None = None  # fixed byte length, None for variable-length strings


HEADER_FIELDS: tuple[HeaderField, ...] = (
    HeaderField("parent_hash", "parentHash", "bytes", 32),
    HeaderField("ommers_hash", "sha3Uncles", "bytes", 32),
    HeaderField("coinbase", "miner", "bytes", 20),
    HeaderField("state_root", "stateRoot", "bytes", 32),
    HeaderField("transactions_root", "transactionsRoot", "bytes", 32),
    HeaderField("receipts_root", "receiptsRoot", "bytes", 32),
    HeaderField("logs_bloom", "logsBloom", "bytes", 256),
    HeaderField("difficulty", "difficulty", "int"),
    HeaderField("number", "number", "int"),
    HeaderField("gas_limit", "gasLimit", "int"),
    HeaderField("gas_used", "gasUsed", "int"),
    HeaderField("timestamp", "timestamp", "int"),
    HeaderField("extra_data", "extraData", "bytes"),
    HeaderField("mix_hash", "mixHash", "bytes", 32),
    HeaderField("nonce", "nonce", "bytes", 8),
    HeaderField("base_fee_per_gas", "baseFeePerGas", "int"),  # London, EIP-1559
    HeaderField("withdrawals_root", "withdrawalsRoot", "bytes", 32),  # Shanghai, EIP-4895
    HeaderField("blob_gas_used", "blobGasUsed", "int"),  # Cancun, EIP-4844
    HeaderField("excess_blob_gas", "excessBlobGas", "int"),  # Cancun, EIP-4844
    HeaderField("parent_beacon_block_root", "parentBeaconBlockRoot", "bytes", 32),  # EIP-4788
    HeaderField("requests_hash", "requestsHash", "bytes", 32),  # Prague, EIP-7685
)
"""Header fields in RLP order (Yellow Paper 4.3, then one EIP per trailing field)."""

LEGACY_FIELD_COUNT = 15
"""Fields every header has (Yellow Paper 4.3); later forks append optional ones."""

NON_HEADER_RPC_FIELDS = frozenset(
    {
        "hash",  # the claimed block hash (checked by verify_header)
        "size",  # RLP size of the whole block
        "totalDifficulty",  # chain-level sum, not committed by the header
        "transactions",  # block body
        "uncles",  # block body (ommer hashes)
        "withdrawals",  # block body (EIP-4895)
        "author",  # alias of `miner` (OpenEthereum, Nethermind)
        "sealFields",  # OpenEthereum rendering of mixHash/nonce
    }
)
"""``eth_getBlockBy*`` keys known not to be header fields (execution-apis block.yaml; client aliases
inline)."""

_RPC_HEADER_NAMES = frozenset(f.rpc_name for f in HEADER_FIELDS)


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockHeader:
    """An execution-layer block header; fork fields are ``None`` before their fork."""

    parent_hash: bytes
    ommers_hash: bytes
    coinbase: bytes
    state_root: bytes
    transactions_root: bytes
    receipts_root: bytes
    logs_bloom: bytes
    difficulty: int
    number: int
    gas_limit: int
    gas_used: int
    timestamp: int
    extra_data: bytes
    mix_hash: bytes
    nonce: bytes
    base_fee_per_gas: int | None = None
    withdrawals_root: bytes | None = None
    blob_gas_used: int | None = None
    excess_blob_gas: int | None = None
    parent_beacon_block_root: bytes | None = None
    requests_hash: bytes | None = None

    def __post_init__(self) -> None:
        missing: str | None = None
        for index, spec in enumerate(HEADER_FIELDS):
            value = getattr(self, spec.attr)
            if value is None:
                if index < LEGACY_FIELD_COUNT:
                    raise DecodingError(_WHAT, f"{spec.attr} is required")
                missing = missing or spec.attr
                continue
            if missing is not None:
                raise DecodingError(_WHAT, f"{spec.attr} is set but the earlier {missing} is not")
            if spec.shape == "int":
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise DecodingError(_WHAT, f"{spec.attr} must be a non-negative int")
            elif not isinstance(value, bytes):
                raise DecodingError(_WHAT, f"{spec.attr} must be bytes")
            elif spec.length is not None and len(value) != spec.length:
                raise DecodingError(_WHAT, f"{spec.attr} must be {spec.length} bytes")


def _present_values(header: BlockHeader) -> list[bytes | int]:
    # Values in RLP order, stopping at the first unset fork field.
    values: list[bytes | int] = []
    for spec in HEADER_FIELDS:
        value = getattr(header, spec.attr)
        if value is None:
            break
        values.append(value)
    return values


def encode_header(header: BlockHeader) -> bytes:
    """RLP of the header: the 15 legacy fields plus every fork field that is set."""
    return rlp.encode(_present_values(header))


def header_hash(header: BlockHeader) -> bytes:
    """The block hash: keccak256(rlp(header))."""
    return keccak256(encode_header(header))


def decode_header(encoded: bytes) -> BlockHeader:
    """Decode an RLP header (``debug_getRawHeader``, or a raw block's first item)."""
    item = rlp.decode(encoded)
    return _header_from_items(item)


def _header_from_items(item: rlp.Item) -> BlockHeader:
    if not isinstance(item, list):
        raise DecodingError(_WHAT, "expected an RLP list")
    if not LEGACY_FIELD_COUNT <= len(item) <= len(HEADER_FIELDS):
        raise DecodingError(_WHAT, f"{len(item)} fields (expected 15..{len(HEADER_FIELDS)})")
    kwargs: dict[str, object] = {}
    for spec, value in zip(HEADER_FIELDS, item, strict=False):
        if not isinstance(value, bytes):
            raise DecodingError(_WHAT, f"{spec.attr} must be a string, not a list")
        kwargs[spec.attr] = rlp.decode_int(value, what=spec.attr) if spec.shape == "int" else value
    return BlockHeader(**kwargs)  # type: ignore[arg-type]


def header_from_rpc(obj: object, *, extra_allowed: Collection[str] = ()) -> BlockHeader:
    """A header from an ``eth_getBlockBy*`` object (hash not checked); missing fork fields stay
    unset; a key not a header field, in :data:`NON_HEADER_RPC_FIELDS` or ``extra_allowed`` raises
    :class:`DecodingError`."""
    block: Mapping[str, object] = get_object(obj, _WHAT)
    unknown = sorted(set(block) - _RPC_HEADER_NAMES - NON_HEADER_RPC_FIELDS - set(extra_allowed))
    if unknown:
        raise DecodingError(
            _WHAT,
            f"unknown field(s) {', '.join(unknown)}: possibly header fields of a later fork"
            " (or an L2's, allowed by its chain profile); refusing to hash without them",
        )
    kwargs: dict[str, object] = {}
    for spec in HEADER_FIELDS:
        if block.get(spec.rpc_name) is None:
            continue  # absent fork field; BlockHeader rejects gaps and missing legacy fields
        if spec.shape == "int":
            kwargs[spec.attr] = quantity_field(block, spec.rpc_name, _WHAT)
        else:
            kwargs[spec.attr] = data_field(block, spec.rpc_name, _WHAT, spec.length)
    for spec in HEADER_FIELDS[:LEGACY_FIELD_COUNT]:
        if spec.attr not in kwargs:
            raise DecodingError(_WHAT, f"missing field {spec.rpc_name!r}")
    return BlockHeader(**kwargs)  # type: ignore[arg-type]


def verify_header(obj: object, *, extra_allowed: Collection[str] = ()) -> BlockHeader:
    """Rebuild the header from JSON; keccak256(rlp) must equal ``obj["hash"]`` (:class:`ProofError`
    ``header``); bad or unknown fields: :class:`DecodingError`."""
    header = header_from_rpc(obj, extra_allowed=extra_allowed)
    claimed = data_field(get_object(obj, _WHAT), "hash", _WHAT, HASH_BYTES)
    computed = header_hash(header)
    if computed != claimed:
        raise ProofError(
            _WHAT, f"recomputed hash 0x{computed.hex()} differs from claimed 0x{claimed.hex()}"
        )
    return header
