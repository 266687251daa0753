"""Typed Ethereum transactions: legacy (EIP-155), access list (EIP-2930), dynamic fee (EIP-1559).

One function per rule, citing its EIP. Types 0-2 only are signed; others (EIP-4844, EIP-7702,
undefined EIP-2718) are a :class:`ForeignTransaction`, skipped (3 and 4 rebuilt for
transactionsRoot). The sender is always *recovered* (EIP-2 low-s), RPC ``from`` never read; decoding
is strict; the node's ``hash`` is the caller's check (:func:`rpc_hash_matches`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from lightpost.core import rlp, rpcfields
from lightpost.core.hashing import keccak256
from lightpost.core.keys import PrivateKey, Signature, recover_address
from lightpost.errors import DecodingError, SignatureError

__all__ = [
    "ACCESS_LIST_TX_TYPE",
    "BLOB_TX_TYPE",
    "DYNAMIC_FEE_TX_TYPE",
    "EIP155_V_OFFSET",
    "LEGACY_TX_TYPE",
    "MAX_TX_TYPE",
    "SET_CODE_TX_TYPE",
    "U64_MAX",
    "U256_MAX",
    "UNPROTECTED_V_OFFSET",
    "AccessList",
    "AccessListTx",
    "DecodedTransaction",
    "DynamicFeeTx",
    "ForeignKind",
    "ForeignTransaction",
    "LegacyTx",
    "SignedTransaction",
    "Transaction",
    "check_chain_id",
    "decode_transaction",
    "encode_transaction",
    "legacy_v",
    "recover_sender",
    "rpc_hash_matches",
    "sign_transaction",
    "signing_data",
    "signing_hash",
    "split_legacy_v",
    "transaction_from_rpc",
]

# --- constants ---

U64_MAX = 2**64 - 1
"""Largest u64: nonce, gas limit and chain id are U64 in execution-specs."""

U256_MAX = 2**256 - 1
"""Largest u256: value and fee fields are U256 in execution-specs."""

LEGACY_TX_TYPE = 0
"""Legacy transactions carry no type byte; 0 is their nominal type (EIP-2718)."""

ACCESS_LIST_TX_TYPE = 1
"""EIP-2930 TransactionType."""

DYNAMIC_FEE_TX_TYPE = 2
"""EIP-1559 TransactionType."""

BLOB_TX_TYPE = 3
"""EIP-4844 BLOB_TX_TYPE: foreign to lightpost (classified, never signed)."""

SET_CODE_TX_TYPE = 4
"""EIP-7702 SET_CODE_TX_TYPE: foreign to lightpost (classified, never signed)."""

MAX_TX_TYPE = 0x7F
"""EIP-2718: a TransactionType is in [0, 0x7f]; a first byte >= 0xc0 is a legacy RLP list."""

UNPROTECTED_V_OFFSET = 27
"""Yellow Paper: an unprotected legacy signature has v = 27 + y_parity."""

EIP155_V_OFFSET = 35
"""EIP-155: a protected legacy signature has v = 35 + 2 * chain_id + y_parity."""

_LEGACY_V_MAX = EIP155_V_OFFSET + 2 * U64_MAX + 1
"""The largest legacy v: chain id u64_max, y_parity 1."""

_ADDRESS_LENGTH = 20
_HASH_LENGTH = 32
_RLP_LIST_PREFIX_MIN = 0xC0
"""First byte of an RLP list (Yellow Paper appendix B): the legacy envelope."""

# Field counts of each envelope, signature included (the EIPs' TransactionPayload).
_BLOB_TX_FIELDS = 14
_SET_CODE_TX_FIELDS = 13

_WHAT = "transaction"
_RPC_WHAT = "rpc transaction"

AccessList = tuple[tuple[bytes, tuple[bytes, ...]], ...]
"""EIP-2930 access list: ((address20, (storage_key32, ...)), ...)."""

ForeignKind = Literal["blob", "set-code", "unknown"]
"""What a :class:`ForeignTransaction` is: EIP-4844, EIP-7702, or a type not yet known."""


# --- field validation (one place for every range rule) ---


def _fail(reason: str) -> DecodingError:
    return DecodingError(_WHAT, reason)


def _check_uint(value: object, maximum: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise _fail(f"{what} must be an integer in [0, {maximum}]")


def _check_bytes(value: object, what: str) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise _fail(f"{what} must be bytes")
    return bytes(value)


def _check_to(value: object) -> bytes | None:
    if value is None:
        return None
    to = _check_bytes(value, "to")
    if len(to) != _ADDRESS_LENGTH:
        raise _fail(f"to must be a 20-byte address or None (contract creation), got {len(to)}")
    return to


def _check_access_list(value: object) -> AccessList:
    # EIP-2930: a list of (20-byte address, list of 32-byte storage keys).
    if not isinstance(value, Sequence) or isinstance(value, (bytes, bytearray, str)):
        raise _fail("access_list must be a sequence of (address, storage_keys)")
    entries: list[tuple[bytes, tuple[bytes, ...]]] = []
    for entry in value:
        if not isinstance(entry, Sequence) or isinstance(entry, (bytes, str)) or len(entry) != 2:
            raise _fail("an access list entry is (address, storage_keys)")
        address = _check_bytes(entry[0], "access list address")
        if len(address) != _ADDRESS_LENGTH:
            raise _fail("an access list address has 20 bytes")
        keys_in = entry[1]
        if not isinstance(keys_in, Sequence) or isinstance(keys_in, (bytes, str)):
            raise _fail("access list storage keys must be a sequence")
        keys = tuple(_check_bytes(k, "storage key") for k in keys_in)
        if any(len(k) != _HASH_LENGTH for k in keys):
            raise _fail("an access list storage key has 32 bytes")
        entries.append((address, keys))
    return tuple(entries)


# --- field tables (one place for every field's order, JSON name and range) ---

_U64, _U256, _TO, _DATA, _ACCESS_LIST = "u64", "u256", "to", "data", "access_list"

_FieldSpec = tuple[tuple[str, str, str], ...]
"""(attribute, JSON-RPC key, kind) in the EIP's RLP order, signature excluded."""

_NONCE = ("nonce", "nonce", _U64)
_GAS = ("gas", "gas", _U64)
_TAIL = (("to", "to", _TO), ("value", "value", _U256), ("data", "input", _DATA))

_LEGACY_SPEC: _FieldSpec = (_NONCE, ("gas_price", "gasPrice", _U256), _GAS, *_TAIL)
"""Yellow Paper / EIP-155: [nonce, gasPrice, gasLimit, to, value, data]."""

_ACCESS_LIST_SPEC: _FieldSpec = (
    ("chain_id", "chainId", _U64),
    *_LEGACY_SPEC,
    ("access_list", "accessList", _ACCESS_LIST),
)
"""EIP-2930: [chainId, nonce, gasPrice, gasLimit, to, value, data, accessList]."""

_DYNAMIC_FEE_SPEC: _FieldSpec = (
    ("chain_id", "chainId", _U64),
    _NONCE,
    ("max_priority_fee_per_gas", "maxPriorityFeePerGas", _U256),
    ("max_fee_per_gas", "maxFeePerGas", _U256),
    _GAS,
    *_TAIL,
    ("access_list", "accessList", _ACCESS_LIST),
)
"""EIP-1559: [chain_id, nonce, max_priority_fee_per_gas, max_fee_per_gas, gas_limit,
destination, amount, data, access_list]."""

_UINT_MAX = {_U64: U64_MAX, _U256: U256_MAX}

_SIGNATURE_FIELDS = 3
"""y_parity (or v), r, s close every envelope."""


def _validate(tx: object, spec: _FieldSpec) -> None:
    # Range-check every field of ``tx`` and normalise bytes-like values (frozen-safe).
    for attr, _, kind in spec:
        value = getattr(tx, attr)
        if kind in _UINT_MAX:
            _check_uint(value, _UINT_MAX[kind], attr)
        elif kind == _TO:
            object.__setattr__(tx, attr, _check_to(value))
        elif kind == _DATA:
            object.__setattr__(tx, attr, _check_bytes(value, attr))
        else:
            object.__setattr__(tx, attr, _check_access_list(value))


# --- the three transaction types lightpost signs ---


@dataclass(frozen=True, slots=True, kw_only=True)
class LegacyTx:
    """A legacy (type 0) transaction. ``chain_id=None`` is an unprotected pre-EIP-155 tx."""

    tx_type: ClassVar[int] = LEGACY_TX_TYPE
    _spec: ClassVar[_FieldSpec] = _LEGACY_SPEC

    chain_id: int | None
    nonce: int
    gas_price: int
    gas: int
    to: bytes | None
    value: int = 0
    data: bytes = b""

    def __post_init__(self) -> None:
        if self.chain_id is not None:
            _check_uint(self.chain_id, U64_MAX, "chain_id")
        _validate(self, self._spec)


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessListTx:
    """An EIP-2930 (type 1) transaction: legacy pricing plus an access list."""

    tx_type: ClassVar[int] = ACCESS_LIST_TX_TYPE
    _spec: ClassVar[_FieldSpec] = _ACCESS_LIST_SPEC

    chain_id: int
    nonce: int
    gas_price: int
    gas: int
    to: bytes | None
    value: int = 0
    data: bytes = b""
    access_list: AccessList = ()

    def __post_init__(self) -> None:
        _validate(self, self._spec)


@dataclass(frozen=True, slots=True, kw_only=True)
class DynamicFeeTx:
    """An EIP-1559 (type 2) transaction: fee cap and priority fee (tip) per gas."""

    tx_type: ClassVar[int] = DYNAMIC_FEE_TX_TYPE
    _spec: ClassVar[_FieldSpec] = _DYNAMIC_FEE_SPEC

    chain_id: int
    nonce: int
    max_priority_fee_per_gas: int
    max_fee_per_gas: int
    gas: int
    to: bytes | None
    value: int = 0
    data: bytes = b""
    access_list: AccessList = ()

    def __post_init__(self) -> None:
        _validate(self, self._spec)


Transaction = LegacyTx | AccessListTx | DynamicFeeTx
"""A transaction lightpost can sign and fully verify."""


# --- EIP-155 v ---


def legacy_v(chain_id: int | None, y_parity: int) -> int:
    """The legacy ``v``: 27 + y unprotected, 35 + 2 * chain_id + y protected (EIP-155)."""
    if chain_id is None:
        return UNPROTECTED_V_OFFSET + y_parity
    return EIP155_V_OFFSET + 2 * chain_id + y_parity


def split_legacy_v(v: int) -> tuple[int | None, int]:
    """Inverse of :func:`legacy_v`: ``(chain_id or None, y_parity)``; v must be 27, 28 or >= 35
    (EIP-155, execution-specs ``recover_sender``), else SignatureError."""
    if v in (UNPROTECTED_V_OFFSET, UNPROTECTED_V_OFFSET + 1):
        return None, v - UNPROTECTED_V_OFFSET
    if v < EIP155_V_OFFSET:
        raise SignatureError(f"bad legacy v {v}: expected 27, 28 or 35 + 2 * chain_id (+1)")
    chain_id, y_parity = divmod(v - EIP155_V_OFFSET, 2)
    if chain_id > U64_MAX:
        raise SignatureError("legacy v encodes a chain id above u64")
    return chain_id, y_parity


# --- signing rules ---


def _access_list_items(access_list: AccessList) -> list[object]:
    return [[address, list(keys)] for address, keys in access_list]


def _encode_fields(values: Mapping[str, Any], spec: _FieldSpec) -> list[object]:
    # RLP items of ``values`` in ``spec`` order.
    items: list[object] = []
    for attr, _, kind in spec:
        value = values[attr]
        if kind == _TO:
            # Contract creation encodes `to` as the empty string (Yellow Paper 4.2).
            items.append(b"" if value is None else value)
        elif kind == _ACCESS_LIST:
            items.append(_access_list_items(value))
        else:
            items.append(value)
    return items


def _unsigned_fields(tx: Transaction) -> list[object]:
    # The transaction's fields in EIP order, without chain id (legacy) and signature.
    return _encode_fields({attr: getattr(tx, attr) for attr, _, _ in tx._spec}, tx._spec)


def _signing_data_legacy(tx: LegacyTx) -> bytes:
    # Pre-EIP-155: rlp([nonce, gasprice, gas, to, value, data]). EIP-155: the same list followed by
    # (chain_id, 0, 0).
    fields = _unsigned_fields(tx)
    if tx.chain_id is not None:
        fields += [tx.chain_id, 0, 0]
    return rlp.encode(fields)


def _signing_data_typed(tx: AccessListTx | DynamicFeeTx) -> bytes:
    # EIP-2930 / EIP-1559: type byte || rlp(fields without the signature).
    return bytes([tx.tx_type]) + rlp.encode(_unsigned_fields(tx))


def signing_data(tx: Transaction) -> bytes:
    """The preimage a signature commits to (EIP-155, EIP-2930, EIP-1559)."""
    if isinstance(tx, LegacyTx):
        return _signing_data_legacy(tx)
    return _signing_data_typed(tx)


def signing_hash(tx: Transaction) -> bytes:
    """keccak256 of :func:`signing_data`: the 32-byte hash that is signed."""
    return keccak256(signing_data(tx))


# --- canonical encoding ---


def _encode_signed(tx: Transaction, signature: Signature) -> bytes:
    # Legacy: rlp([..., v, r, s]) (EIP-155). Typed: type || rlp([..., y, r, s]) (EIP-2718).
    fields = _unsigned_fields(tx)
    if isinstance(tx, LegacyTx):
        fields += [legacy_v(tx.chain_id, signature.y_parity), signature.r, signature.s]
        return rlp.encode(fields)
    fields += [signature.y_parity, signature.r, signature.s]
    return bytes([tx.tx_type]) + rlp.encode(fields)


def _recover(tx: Transaction, signature: Signature) -> bytes:
    return recover_address(signing_hash(tx), signature)


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedTransaction:
    """A signed transaction; ``raw``, ``hash`` and ``sender`` (recovered, EIP-2 low-s) derived;
    SignatureError when no key recovers."""

    tx: Transaction
    signature: Signature
    raw: bytes = field(init=False, repr=False)
    hash: bytes = field(init=False)
    sender: bytes = field(init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.tx, (LegacyTx, AccessListTx, DynamicFeeTx)):
            raise _fail("tx must be a LegacyTx, AccessListTx or DynamicFeeTx")
        if not isinstance(self.signature, Signature):
            raise _fail("signature must be a lightpost.core.keys.Signature")
        raw = _encode_signed(self.tx, self.signature)
        object.__setattr__(self, "raw", raw)
        object.__setattr__(self, "hash", keccak256(raw))
        object.__setattr__(self, "sender", _recover(self.tx, self.signature))

    @property
    def tx_type(self) -> int:
        """0, 1 or 2."""
        return self.tx.tx_type

    @property
    def chain_id(self) -> int | None:
        """The chain id the signature commits to (None: unprotected legacy)."""
        return self.tx.chain_id

    @property
    def v(self) -> int:
        """The ``v`` as nodes report it: legacy EIP-155 v, or y_parity for typed txs."""
        if isinstance(self.tx, LegacyTx):
            return legacy_v(self.tx.chain_id, self.signature.y_parity)
        return self.signature.y_parity


def sign_transaction(tx: Transaction, key: PrivateKey) -> SignedTransaction:
    """Sign ``tx`` (RFC 6979, low-s); the recovered sender must be ``key``'s address (a fault must
    not put another's tx on the wire)."""
    signed = SignedTransaction(tx=tx, signature=key.sign_hash(signing_hash(tx)))
    if signed.sender != key.address:
        raise SignatureError("signature self-check failed: the recovered sender is not the key's")
    return signed


def encode_transaction(signed: SignedTransaction) -> bytes:
    """The canonical bytes of a signed transaction (EIP-2718 envelope)."""
    return signed.raw


def check_chain_id(tx: Transaction, expected: int | None) -> None:
    """EIP-155: a chain-bound signature must be for ``expected`` (None: no check); unprotected
    legacy txs pass (consensus accepts them)."""
    if expected is None or tx.chain_id is None:
        return
    if tx.chain_id != expected:
        raise SignatureError(f"signed for chain id {tx.chain_id}, expected {expected} (EIP-155)")


def recover_sender(signed: SignedTransaction, *, chain_id: int | None = None) -> bytes:
    """Recover the 20-byte sender from the signature; check the chain id if given."""
    check_chain_id(signed.tx, chain_id)
    return _recover(signed.tx, signed.signature)


# --- transactions lightpost does not sign ---


@dataclass(frozen=True, slots=True, kw_only=True)
class ForeignTransaction:
    """A transaction type lightpost does not handle, so scans skip it: ``raw`` = type || payload,
    ``hash`` = keccak256(raw); ``raw`` None only for types 0x05..0x7f (``hash`` is then the
    node's *unverified* claim)."""

    type: int
    raw: bytes | None
    hash: bytes

    def __post_init__(self) -> None:
        _check_uint(self.type, MAX_TX_TYPE, "transaction type")
        if self.type <= DYNAMIC_FEE_TX_TYPE:
            raise _fail(f"type {self.type} is not foreign")
        if not isinstance(self.hash, bytes) or len(self.hash) != _HASH_LENGTH:
            raise _fail("hash must be 32 bytes")
        if self.raw is not None:
            if not isinstance(self.raw, bytes) or self.raw[:1] != bytes([self.type]):
                raise _fail("raw must start with the type byte")
            if keccak256(self.raw) != self.hash:
                raise _fail("hash is not keccak256(raw)")

    @property
    def kind(self) -> ForeignKind:
        """``"blob"`` (EIP-4844), ``"set-code"`` (EIP-7702) or ``"unknown"``."""
        if self.type == BLOB_TX_TYPE:
            return "blob"
        if self.type == SET_CODE_TX_TYPE:
            return "set-code"
        return "unknown"


def _foreign(raw: bytes) -> ForeignTransaction:
    return ForeignTransaction(type=raw[0], raw=raw, hash=keccak256(raw))


DecodedTransaction = SignedTransaction | ForeignTransaction
"""What a block can hold, as lightpost sees it."""


# --- decoding raw bytes ---


def _rlp_fields(payload: bytes, count: int, kind: str) -> list[rlp.Item]:
    item = rlp.decode(payload)
    if not isinstance(item, list):
        raise _fail(f"{kind} payload is not an RLP list")
    if len(item) != count:
        raise _fail(f"{kind} has {len(item)} fields, expected {count}")
    return item


def _bytes_item(item: rlp.Item, what: str) -> bytes:
    if not isinstance(item, bytes):
        raise _fail(f"{what} must be a string, not a list")
    return item


def _uint_item(item: rlp.Item, maximum: int, what: str) -> int:
    value = rlp.decode_int(_bytes_item(item, what), what=what)
    if value > maximum:
        raise _fail(f"{what} exceeds {maximum}")
    return value


def _access_list_decode(item: rlp.Item) -> AccessList:
    if not isinstance(item, list):
        raise _fail("access list must be a list")
    entries: list[tuple[bytes, tuple[bytes, ...]]] = []
    for entry in item:
        if not isinstance(entry, list) or len(entry) != 2 or not isinstance(entry[1], list):
            raise _fail("an access list entry is [address, [storage_keys]]")
        address = _bytes_item(entry[0], "access list address")
        keys = tuple(_bytes_item(k, "storage key") for k in entry[1])
        entries.append((address, keys))
    return _check_access_list(entries)


def _decode_fields(items: list[rlp.Item], spec: _FieldSpec) -> dict[str, Any]:
    # Constructor arguments from RLP items in ``spec`` order (ranges checked here).
    out: dict[str, Any] = {}
    for (attr, _, kind), item in zip(spec, items, strict=True):
        if kind in _UINT_MAX:
            out[attr] = _uint_item(item, _UINT_MAX[kind], attr)
        elif kind == _TO:
            to = _bytes_item(item, attr)
            out[attr] = None if to == b"" else to
        elif kind == _DATA:
            out[attr] = _bytes_item(item, attr)
        else:
            out[attr] = _access_list_decode(item)
    return out


def _signature_items(y_item: rlp.Item, r_item: rlp.Item, s_item: rlp.Item) -> Signature:
    y_parity = _uint_item(y_item, 1, "y_parity")
    r = _uint_item(r_item, U256_MAX, "r")
    s = _uint_item(s_item, U256_MAX, "s")
    return Signature(y_parity=y_parity, r=r, s=s)


def _decode_legacy(raw: bytes) -> SignedTransaction:
    # Legacy: rlp([nonce, gas_price, gas, to, value, data, v, r, s]) (EIP-155).
    f = _rlp_fields(raw, len(_LEGACY_SPEC) + _SIGNATURE_FIELDS, "legacy transaction")
    v_item, r_item, s_item = f[len(_LEGACY_SPEC) :]
    chain_id, y_parity = split_legacy_v(_uint_item(v_item, _LEGACY_V_MAX, "v"))
    tx = LegacyTx(chain_id=chain_id, **_decode_fields(f[: len(_LEGACY_SPEC)], _LEGACY_SPEC))
    signature = Signature(
        y_parity=y_parity, r=_uint_item(r_item, U256_MAX, "r"), s=_uint_item(s_item, U256_MAX, "s")
    )
    return SignedTransaction(tx=tx, signature=signature)


def _decode_typed(raw: bytes, cls: type[AccessListTx] | type[DynamicFeeTx]) -> SignedTransaction:
    # EIP-2930 / EIP-1559: type || rlp([...fields..., y_parity, r, s]).
    n = len(cls._spec)
    f = _rlp_fields(raw[1:], n + _SIGNATURE_FIELDS, f"type-{cls.tx_type} transaction")
    tx = cls(**_decode_fields(f[:n], cls._spec))
    return SignedTransaction(tx=tx, signature=_signature_items(*f[n:]))


def _classify_blob_tx(raw: bytes) -> ForeignTransaction:
    # EIP-4844: 0x03 || rlp([14 fields]) as in blocks; the network form (4-item wrapper with
    # sidecar) is refused.
    _rlp_fields(raw[1:], _BLOB_TX_FIELDS, "EIP-4844 transaction")
    return _foreign(raw)


def _classify_set_code_tx(raw: bytes) -> ForeignTransaction:
    # EIP-7702: 0x04 || rlp([13 fields]).
    _rlp_fields(raw[1:], _SET_CODE_TX_FIELDS, "EIP-7702 transaction")
    return _foreign(raw)


def decode_transaction(raw: bytes, *, chain_id: int | None = None) -> DecodedTransaction:
    """Decode canonical transaction bytes by first byte (EIP-2718): 0-2 ->
    :class:`SignedTransaction` (chain id checked if given); 3, 4, 0x05..0x7f ->
    :class:`ForeignTransaction`. Else or non-canonical: DecodingError; bad signatures:
    SignatureError."""
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise _fail("expected bytes")
    raw = bytes(raw)
    if not raw:
        raise _fail("empty input")
    first = raw[0]
    signed: SignedTransaction
    if first >= _RLP_LIST_PREFIX_MIN:
        signed = _decode_legacy(raw)
    elif first == ACCESS_LIST_TX_TYPE:
        signed = _decode_typed(raw, AccessListTx)
    elif first == DYNAMIC_FEE_TX_TYPE:
        signed = _decode_typed(raw, DynamicFeeTx)
    elif first == BLOB_TX_TYPE:
        return _classify_blob_tx(raw)
    elif first == SET_CODE_TX_TYPE:
        return _classify_set_code_tx(raw)
    elif SET_CODE_TX_TYPE < first <= MAX_TX_TYPE:
        # EIP-2718 reserves these for future types; their payload format is unknown.
        return _foreign(raw)
    elif first == LEGACY_TX_TYPE:
        raise _fail("type 0x00 has no typed envelope (EIP-2718): legacy txs are bare RLP lists")
    else:
        raise _fail(f"first byte 0x{first:02x} starts an RLP string, not a transaction")
    check_chain_id(signed.tx, chain_id)
    if signed.raw != raw:
        # Strict RLP makes this unreachable; kept so a non-canonical form can never slip by.
        raise _fail("not the canonical encoding")
    return signed


# --- JSON-RPC objects ---


def _rpc_fail(reason: str) -> DecodingError:
    return DecodingError(_RPC_WHAT, reason)


def _rpc_get(obj: Mapping[str, Any], key: str) -> Any:
    return rpcfields.get_field(obj, key, _RPC_WHAT)


def _parse_quantity(text: object, what: str, maximum: int = U256_MAX) -> int:
    # A QUANTITY (lightpost.core.rpcfields) bounded by the field's integer type.
    value = rpcfields.parse_quantity(text, f"{_RPC_WHAT}.{what}")
    if value > maximum:
        raise _rpc_fail(f"{what} exceeds {maximum}")
    return value


def _parse_data(text: object, what: str, length: int | None = None) -> bytes:
    return rpcfields.parse_data(text, f"{_RPC_WHAT}.{what}", length)


def _rpc_quantity(obj: Mapping[str, Any], key: str, maximum: int = U256_MAX) -> int:
    return _parse_quantity(_rpc_get(obj, key), key, maximum)


def _rpc_to(obj: Mapping[str, Any]) -> bytes | None:
    to = obj.get("to")
    return None if to is None else _parse_data(to, "to", _ADDRESS_LENGTH)


def _rpc_access_list(obj: Mapping[str, Any]) -> AccessList:
    entries = _rpc_get(obj, "accessList")
    if not isinstance(entries, list):
        raise _rpc_fail("accessList must be a list")
    out: list[tuple[bytes, tuple[bytes, ...]]] = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            raise _rpc_fail("an accessList entry must be an object")
        keys = _rpc_get(entry, "storageKeys")
        if not isinstance(keys, list):
            raise _rpc_fail("storageKeys must be a list")
        out.append(
            (
                _parse_data(_rpc_get(entry, "address"), "accessList address", _ADDRESS_LENGTH),
                tuple(_parse_data(k, "storage key", _HASH_LENGTH) for k in keys),
            )
        )
    return tuple(out)


def _rpc_fields(obj: Mapping[str, Any], spec: _FieldSpec) -> dict[str, Any]:
    # Constructor arguments from a JSON-RPC object, by ``spec``'s JSON keys.
    out: dict[str, Any] = {}
    for attr, key, kind in spec:
        if kind in _UINT_MAX:
            out[attr] = _rpc_quantity(obj, key, _UINT_MAX[kind])
        elif kind == _TO:
            out[attr] = _rpc_to(obj)
        elif kind == _DATA:
            # execution-apis names the calldata "input"; some older nodes used "data".
            name = key if key in obj else "data"
            out[attr] = _parse_data(_rpc_get(obj, name), name)
        else:
            out[attr] = _rpc_access_list(obj)
    return out


def _rpc_y_parity(obj: Mapping[str, Any]) -> int:
    # Typed txs: ``yParity`` (execution-apis); older nodes sent only ``v`` (= yParity).
    if "yParity" in obj:
        y_parity = _parse_quantity(obj["yParity"], "yParity")
        if "v" in obj and _parse_quantity(obj["v"], "v") != y_parity:
            raise _rpc_fail("v and yParity disagree")
    else:
        y_parity = _rpc_quantity(obj, "v")
    if y_parity > 1:
        raise SignatureError(f"yParity must be 0 or 1, got {y_parity}")
    return y_parity


def _rpc_signature(obj: Mapping[str, Any], y_parity: int) -> Signature:
    return Signature(y_parity=y_parity, r=_rpc_quantity(obj, "r"), s=_rpc_quantity(obj, "s"))


def _legacy_from_rpc(obj: Mapping[str, Any]) -> SignedTransaction:
    chain_id, y_parity = split_legacy_v(_rpc_quantity(obj, "v", _LEGACY_V_MAX))
    # A node may also report chainId; for a protected tx it must match the one in v.
    claimed = obj.get("chainId")
    if (
        chain_id is not None
        and claimed is not None
        and _parse_quantity(claimed, "chainId") != chain_id
    ):
        raise _rpc_fail("chainId disagrees with the chain id encoded in v")
    tx = LegacyTx(chain_id=chain_id, **_rpc_fields(obj, _LEGACY_SPEC))
    return SignedTransaction(tx=tx, signature=_rpc_signature(obj, y_parity))


def _typed_from_rpc(
    obj: Mapping[str, Any], cls: type[AccessListTx] | type[DynamicFeeTx]
) -> SignedTransaction:
    tx = cls(**_rpc_fields(obj, cls._spec))
    return SignedTransaction(tx=tx, signature=_rpc_signature(obj, _rpc_y_parity(obj)))


def _rpc_fee_market_head(obj: Mapping[str, Any]) -> list[object]:
    # The fields EIP-4844 and EIP-7702 share with EIP-1559, in order; `to` is required.
    values = _rpc_fields(obj, _DYNAMIC_FEE_SPEC)
    if values["to"] is None:
        raise _rpc_fail("blob and set-code transactions cannot create contracts")
    return _encode_fields(values, _DYNAMIC_FEE_SPEC)


def _rpc_signature_tail(obj: Mapping[str, Any]) -> list[object]:
    return [_rpc_y_parity(obj), _rpc_quantity(obj, "r"), _rpc_quantity(obj, "s")]


def _blob_tx_from_rpc(obj: Mapping[str, Any]) -> ForeignTransaction:
    # EIP-4844: [..1559 fields.., max_fee_per_blob_gas, blob_versioned_hashes, y, r, s].
    hashes = _rpc_get(obj, "blobVersionedHashes")
    if not isinstance(hashes, list):
        raise _rpc_fail("blobVersionedHashes must be a list")
    fields = [
        *_rpc_fee_market_head(obj),
        _rpc_quantity(obj, "maxFeePerBlobGas"),
        [_parse_data(h, "blob versioned hash", _HASH_LENGTH) for h in hashes],
        *_rpc_signature_tail(obj),
    ]
    return _foreign(bytes([BLOB_TX_TYPE]) + rlp.encode(fields))


def _authorization_item(entry: object) -> list[object]:
    # EIP-7702 authorization tuple: [chain_id, address, nonce, y_parity, r, s].
    if not isinstance(entry, Mapping):
        raise _rpc_fail("an authorizationList entry must be an object")
    return [
        _rpc_quantity(entry, "chainId"),
        _parse_data(_rpc_get(entry, "address"), "authorization address", _ADDRESS_LENGTH),
        _rpc_quantity(entry, "nonce", U64_MAX),
        _rpc_quantity(entry, "yParity"),
        _rpc_quantity(entry, "r"),
        _rpc_quantity(entry, "s"),
    ]


def _set_code_tx_from_rpc(obj: Mapping[str, Any]) -> ForeignTransaction:
    # EIP-7702: [..1559 fields.., authorization_list, y, r, s].
    auths = _rpc_get(obj, "authorizationList")
    if not isinstance(auths, list):
        raise _rpc_fail("authorizationList must be a list")
    fields = [
        *_rpc_fee_market_head(obj),
        [_authorization_item(a) for a in auths],
        *_rpc_signature_tail(obj),
    ]
    return _foreign(bytes([SET_CODE_TX_TYPE]) + rlp.encode(fields))


def transaction_from_rpc(
    obj: Mapping[str, Any], *, chain_id: int | None = None
) -> DecodedTransaction:
    """Rebuild a transaction from its JSON-RPC object (``from`` never read): 0-2 ->
    :class:`SignedTransaction`; 3, 4 -> :class:`ForeignTransaction` with ``raw``; unknown
    without. ``hash`` unchecked: :func:`rpc_hash_matches`."""
    if not isinstance(obj, Mapping):
        raise _rpc_fail("expected a JSON object")
    # Pre-Berlin nodes omit "type"; their transactions are all legacy.
    tx_type = _parse_quantity(obj["type"], "type") if "type" in obj else LEGACY_TX_TYPE
    signed: SignedTransaction
    if tx_type == LEGACY_TX_TYPE:
        signed = _legacy_from_rpc(obj)
    elif tx_type == ACCESS_LIST_TX_TYPE:
        signed = _typed_from_rpc(obj, AccessListTx)
    elif tx_type == DYNAMIC_FEE_TX_TYPE:
        signed = _typed_from_rpc(obj, DynamicFeeTx)
    elif tx_type == BLOB_TX_TYPE:
        return _blob_tx_from_rpc(obj)
    elif tx_type == SET_CODE_TX_TYPE:
        return _set_code_tx_from_rpc(obj)
    elif tx_type <= MAX_TX_TYPE:
        claimed = _parse_data(_rpc_get(obj, "hash"), "hash", _HASH_LENGTH)
        return ForeignTransaction(type=tx_type, raw=None, hash=claimed)
    else:
        raise _rpc_fail(f"type {tx_type} is outside EIP-2718's range")
    check_chain_id(signed.tx, chain_id)
    return signed


def rpc_hash_matches(obj: Mapping[str, Any], rebuilt: DecodedTransaction | None = None) -> bool:
    """True iff the transaction rebuilt from ``obj`` (or ``rebuilt``) hashes to ``obj["hash"]``; a
    ForeignTransaction without ``raw`` gives False."""
    if rebuilt is None:
        rebuilt = transaction_from_rpc(obj)
    if rebuilt.raw is None:
        return False
    return rebuilt.hash == _parse_data(_rpc_get(obj, "hash"), "hash", _HASH_LENGTH)
