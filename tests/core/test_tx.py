"""Transactions: official vectors, anvil capture, round trips, fuzzing, eth-account cross-check."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account._utils.legacy_transactions import Transaction as EthAccountLegacyTx
from eth_account.typed_transactions import TypedTransaction
from hexbytes import HexBytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lightpost.core import rlp
from lightpost.core.keys import SECP256K1_N, PrivateKey, Signature, to_checksum_address
from lightpost.core.tx import (
    AccessListTx,
    DynamicFeeTx,
    ForeignTransaction,
    LegacyTx,
    SignedTransaction,
    Transaction,
    decode_transaction,
    encode_transaction,
    legacy_v,
    recover_sender,
    rpc_hash_matches,
    sign_transaction,
    signing_data,
    signing_hash,
    split_legacy_v,
    transaction_from_rpc,
)
from lightpost.errors import DecodingError, LightpostError, SignatureError
from tests.conftest import vector_path


def _hex(text: str) -> bytes:
    return bytes.fromhex(text[2:] if text.startswith("0x") else text)


def _io_lines(path: Path, prefix: str) -> list[Any]:
    return [
        json.loads(line[3:]) for line in path.read_text().splitlines() if line.startswith(prefix)
    ]


KEY = PrivateKey.from_hex("0x" + "46" * 32)
TO = bytes.fromhex("35" * 20)

# --- ethereum/tests EIP-155 (Vitalik) ----------------------------------------------------

VITALIK_NAMES = [f"Vitalik_{i}" for i in range(1, 18)]


def _vitalik(name: str) -> dict[str, Any]:
    data = json.loads(vector_path("tx", "ttTransactionTestEip155VitaliksTests.json").read_text())
    case: dict[str, Any] = data[name]
    return case


@pytest.mark.parametrize("name", VITALIK_NAMES[:14])
def test_vitalik_valid(name: str) -> None:
    case = _vitalik(name)
    raw = _hex(case["rlp"])
    signed = decode_transaction(raw, chain_id=1)
    assert isinstance(signed, SignedTransaction)
    assert signed.hash == _hex(case["hash"])
    assert signed.sender == _hex(case["sender"])
    assert recover_sender(signed, chain_id=1) == signed.sender
    assert encode_transaction(signed) == raw
    fields = case["transaction"]
    tx = signed.tx
    assert isinstance(tx, LegacyTx)
    assert tx.nonce == int(fields["nonce"], 16)
    assert tx.gas_price == int(fields["gasPrice"], 16)
    assert tx.gas == int(fields["gasLimit"], 16)
    assert tx.value == int(fields["value"], 16)
    assert tx.data == _hex(fields["data"])
    assert tx.to == (_hex(fields["to"]) if fields["to"] else None)
    assert signed.v == int(fields["v"], 16)
    assert signed.signature.r == int(fields["r"], 16)
    assert signed.signature.s == int(fields["s"], 16)
    # 1-11 are protected for chain 1, 12-14 unprotected (v 27/28).
    assert tx.chain_id == (1 if int(name.split("_")[1]) <= 11 else None)


@pytest.mark.parametrize("name", VITALIK_NAMES[14:])
def test_vitalik_rejected_on_chain_1(name: str) -> None:
    case = _vitalik(name)
    assert "hash" not in case  # the vector marks these as invalid
    with pytest.raises(SignatureError, match="chain id 3"):
        decode_transaction(_hex(case["rlp"]), chain_id=1)


# --- ethereum/tests EIP-2930 ----------------------------------------------------------------


def test_access_list_storage_32_bytes() -> None:
    case = json.loads(vector_path("tx", "accessListStorage32Bytes.json").read_text())
    case = case["accessListStorage32Bytes"]
    raw = _hex(case["txbytes"])
    signed = decode_transaction(raw)
    assert isinstance(signed, SignedTransaction)
    assert isinstance(signed.tx, AccessListTx)
    assert signed.hash == _hex(case["result"]["Berlin"]["hash"])
    assert signed.sender == _hex(case["result"]["Berlin"]["sender"])
    assert signed.tx.access_list[0][1] == (b"\xff" * 32,)
    assert signed.raw == raw


# --- ethereumjs eip1559.json signing vectors ----------------------------------------------------


def _eip1559_cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads(vector_path("tx", "eip1559.json").read_text())
    return cases


@pytest.mark.parametrize("index", range(10))
def test_eip1559_signing_vectors(index: int) -> None:
    case = _eip1559_cases()[index]
    wrapped = rlp.decode(_hex(case["signedTransactionRLP"]))  # one extra RLP string layer
    assert isinstance(wrapped, bytes)
    decoded = decode_transaction(wrapped)
    assert isinstance(decoded, SignedTransaction)
    tx = decoded.tx
    assert isinstance(tx, DynamicFeeTx)
    assert tx.chain_id == 7822  # only inside the RLP
    assert tx.nonce == case["nonce"]
    assert tx.value == case["value"]
    assert tx.gas == case["gasLimit"]
    assert tx.max_priority_fee_per_gas == case["maxInclusionFeePerGas"]
    assert tx.max_fee_per_gas == case["maxFeePerGas"]
    assert tx.to == _hex(case["to"])
    key = PrivateKey.from_hex(case["privateKey"])
    # Re-signing the same fields (RFC 6979) reproduces r, s, yParity exactly.
    resigned = sign_transaction(tx, key)
    assert resigned.signature == decoded.signature
    assert resigned.raw == wrapped
    assert decoded.sender == key.address


# --- EIP-155 worked example -------------------------------------------------------------------


def test_eip155_example() -> None:
    case = json.loads(vector_path("tx", "eip155-example.json").read_text())
    f = case["tx"]
    tx = LegacyTx(
        chain_id=f["chainId"],
        nonce=f["nonce"],
        gas_price=f["gasPrice"],
        gas=f["gas"],
        to=_hex(f["to"]),
        value=f["value"],
        data=_hex(f["data"]),
    )
    assert signing_data(tx) == _hex(case["signing_data"])
    assert signing_hash(tx) == _hex(case["signing_hash"])
    signed = sign_transaction(tx, PrivateKey.from_hex(case["private_key"]))
    assert (signed.v, signed.signature.r, signed.signature.s) == (case["v"], case["r"], case["s"])
    assert signed.raw == _hex(case["signed_tx"])


# --- execution-apis ----------------------------------------------------------------------------

GET_BY_HASH = ["get-access-list.io", "get-dynamic-fee.io", "get-legacy-tx.io"]
SEND_RAW = [
    ("send-access-list-transaction.io", AccessListTx),
    ("send-dynamic-fee-access-list-transaction.io", DynamicFeeTx),
    ("send-legacy-transaction.io", LegacyTx),
]


@pytest.mark.parametrize("name", GET_BY_HASH)
def test_execution_apis_get_transaction_by_hash(name: str) -> None:
    path = vector_path("tx", "execution-apis", "eth_getTransactionByHash", name)
    obj = _io_lines(path, "<<")[0]["result"]
    signed = transaction_from_rpc(obj)
    assert isinstance(signed, SignedTransaction)
    assert rpc_hash_matches(obj, signed)
    assert rpc_hash_matches(obj)
    assert signed.sender == _hex(obj["from"])
    assert signed.tx_type == int(obj["type"], 16)
    if name == "get-access-list.io":
        assert signed.signature.r < 2**248  # the 31-byte r case
        assert signed.tx.to is None


@pytest.mark.parametrize(("name", "kind"), SEND_RAW)
def test_execution_apis_send_raw_transaction(name: str, kind: type) -> None:
    path = vector_path("tx", "execution-apis", "eth_sendRawTransaction", name)
    raw = _hex(_io_lines(path, ">>")[0]["params"][0])
    expected = _hex(_io_lines(path, "<<")[0]["result"])
    signed = decode_transaction(raw)
    assert isinstance(signed, SignedTransaction)
    assert isinstance(signed.tx, kind)
    assert signed.hash == expected
    assert signed.raw == raw


# --- anvil capture: a current-fork block with types 0, 1, 2, 4 ------------------------------------


def _anvil_block() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(vector_path("anvil", "block-2-mixed-types.json").read_text())
    return data


def test_anvil_block_every_transaction_rebuilds() -> None:
    data = _anvil_block()
    raws = {k.lower(): _hex(v) for k, v in data["raw_transactions"].items()}
    kinds = []
    for obj in data["block"]["transactions"]:
        rebuilt = transaction_from_rpc(obj, chain_id=31337)
        assert rpc_hash_matches(obj, rebuilt)
        assert rebuilt.hash == _hex(obj["hash"])
        if obj["hash"].lower() in raws:
            assert rebuilt.raw == raws[obj["hash"].lower()]
        if isinstance(rebuilt, SignedTransaction):
            assert rebuilt.sender == _hex(obj["from"])
            kinds.append(rebuilt.tx_type)
        else:
            assert rebuilt.kind == "set-code"
            assert rebuilt.type == 4
            kinds.append(rebuilt.type)
    assert sorted(set(kinds)) == [0, 1, 2, 4]


def test_anvil_raw_transactions_decode() -> None:
    data = _anvil_block()
    for tx_hash, raw_hex in data["raw_transactions"].items():
        decoded = decode_transaction(_hex(raw_hex), chain_id=31337)
        assert decoded.hash == _hex(tx_hash)
        if isinstance(decoded, ForeignTransaction):
            assert decoded.kind == "set-code"


def test_rpc_from_field_is_never_trusted() -> None:
    obj = dict(_anvil_block()["block"]["transactions"][0])
    honest = transaction_from_rpc(obj)
    obj["from"] = "0x" + "00" * 20
    lying = transaction_from_rpc(obj)
    assert isinstance(honest, SignedTransaction) and isinstance(lying, SignedTransaction)
    assert lying.sender == honest.sender != b"\x00" * 20
    # A changed field changes the hash: the caller's check catches it.
    obj["nonce"] = "0x9"
    assert not rpc_hash_matches(obj)


def test_rpc_legacy_chain_id_must_match_v() -> None:
    obj = dict(next(t for t in _anvil_block()["block"]["transactions"] if t["type"] == "0x0"))
    obj["chainId"] = "0x1"
    with pytest.raises(DecodingError, match="chainId disagrees"):
        transaction_from_rpc(obj)


def test_rpc_chain_id_checked_when_asked() -> None:
    obj = _anvil_block()["block"]["transactions"][0]
    with pytest.raises(SignatureError, match="chain id 31337"):
        transaction_from_rpc(obj, chain_id=1)


# --- foreign types ----------------------------------------------------------------------------

BLOB_JSON = {
    "type": "0x3",
    "chainId": "0x7a69",
    "nonce": "0x5",
    "maxPriorityFeePerGas": "0x3b9aca00",
    "maxFeePerGas": "0x2540be400",
    "gas": "0x5208",
    "to": "0x" + "35" * 20,
    "value": "0x0",
    "input": "0x1234",
    "accessList": [{"address": "0x" + "ab" * 20, "storageKeys": ["0x" + "01" * 32]}],
    "maxFeePerBlobGas": "0x10",
    "blobVersionedHashes": ["0x01" + "aa" * 31, "0x01" + "bb" * 31],
    "yParity": "0x1",
    "r": "0x" + "11" * 32,
    "s": "0x" + "22" * 32,
}


def test_blob_tx_rebuilt_from_json_matches_eth_account_fields() -> None:
    rebuilt = transaction_from_rpc(BLOB_JSON)
    assert isinstance(rebuilt, ForeignTransaction)
    assert rebuilt.kind == "blob"
    assert rebuilt.raw is not None
    # The same bytes decode back to the same classification and hash.
    again = decode_transaction(rebuilt.raw)
    assert again == rebuilt
    # An independent decoder reads every field where EIP-4844 puts it.
    theirs = TypedTransaction.from_bytes(HexBytes(rebuilt.raw)).as_dict()
    assert theirs["chainId"] == 31337
    assert theirs["nonce"] == 5
    assert theirs["maxPriorityFeePerGas"] == 10**9
    assert theirs["maxFeePerGas"] == 10**10
    assert theirs["gas"] == 21000
    assert bytes(theirs["to"]) == b"\x35" * 20
    assert bytes(theirs["data"]) == b"\x12\x34"
    assert theirs["maxFeePerBlobGas"] == 16
    assert [bytes(h) for h in theirs["blobVersionedHashes"]] == [
        b"\x01" + b"\xaa" * 31,
        b"\x01" + b"\xbb" * 31,
    ]
    assert (theirs["v"], theirs["r"], theirs["s"]) == (1, int("11" * 32, 16), int("22" * 32, 16))
    # rpc_hash_matches compares with the claimed hash.
    assert rpc_hash_matches({**BLOB_JSON, "hash": "0x" + rebuilt.hash.hex()})
    assert not rpc_hash_matches({**BLOB_JSON, "hash": "0x" + "00" * 32})


def test_unknown_types_are_classified_not_crashing() -> None:
    for first in (0x05, 0x42, 0x7F):
        foreign = decode_transaction(bytes([first]) + b"\xde\xad")
        assert isinstance(foreign, ForeignTransaction)
        assert foreign.kind == "unknown"
        assert foreign.type == first
    claimed = "0x" + "cd" * 32
    from_json = transaction_from_rpc({"type": "0x5", "hash": claimed})
    assert isinstance(from_json, ForeignTransaction)
    assert from_json.raw is None and from_json.hash == _hex(claimed)
    assert not rpc_hash_matches({"type": "0x5", "hash": claimed}, from_json)


def test_blob_network_form_is_not_a_block_transaction() -> None:
    body = rlp.decode(_hex(transaction_from_rpc(BLOB_JSON).raw.hex()[2:]))  # type: ignore[union-attr]
    network = b"\x03" + rlp.encode([body, [], [], []])
    with pytest.raises(DecodingError, match="4 fields"):
        decode_transaction(network)


# --- garbage and non-canonical input -------------------------------------------------------------


def _valid_legacy() -> SignedTransaction:
    tx = LegacyTx(chain_id=1, nonce=3, gas_price=10**9, gas=21000, to=TO, value=1, data=b"hi")
    return sign_transaction(tx, KEY)


def _legacy_with(**changes: Any) -> bytes:
    s = _valid_legacy()
    fields: list[Any] = [3, 10**9, 21000, TO, 1, b"hi", s.v, s.signature.r, s.signature.s]
    names = ["nonce", "gas_price", "gas", "to", "value", "data", "v", "r", "s"]
    for name, value in changes.items():
        fields[names.index(name)] = value
    return rlp.encode(fields)


@pytest.mark.parametrize(
    ("raw", "error", "match"),
    [
        (b"", DecodingError, "empty"),
        (b"\x00\xc0", DecodingError, "type 0x00"),
        (b"\x80", DecodingError, "RLP string"),
        (b"\xbf\x01", DecodingError, "RLP string"),
        (b"\x02\x80", DecodingError, "not an RLP list"),
        (b"\x01\xc0", DecodingError, "0 fields"),
        (b"\x04\xc1\x01", DecodingError, "1 fields"),
        (b"\x03", DecodingError, "end of input"),
        (b"\xc0", DecodingError, "0 fields"),
        (b"\xf8\x64\x80", DecodingError, "truncated"),
    ],
)
def test_garbage_raises_decoding_error(raw: bytes, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        decode_transaction(raw)


def test_truncated_real_transaction() -> None:
    raw = _valid_legacy().raw
    for cut in range(1, len(raw)):
        with pytest.raises(DecodingError):
            decode_transaction(raw[:cut])
    with pytest.raises(DecodingError, match="trailing"):
        decode_transaction(raw + b"\x00")


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"v": 29}, SignatureError, "bad legacy v"),
        ({"v": 0}, SignatureError, "bad legacy v"),
        ({"v": 34}, SignatureError, "bad legacy v"),
        ({"nonce": b"\x00\x03"}, DecodingError, "leading zero"),
        ({"nonce": 2**64}, DecodingError, "nonce exceeds"),
        ({"to": b"\x35" * 19}, DecodingError, "20-byte"),
        ({"data": [b"x"]}, DecodingError, "data must be a string"),
        ({"r": 0}, SignatureError, "r out of range"),
        ({"r": SECP256K1_N}, SignatureError, "r out of range"),
        ({"s": SECP256K1_N - 1}, SignatureError, "high"),
    ],
)
def test_bad_fields_rejected(changes: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        decode_transaction(_legacy_with(**changes))


def test_high_s_twin_is_rejected() -> None:
    """EIP-2: (r, n - s, 1 - y) is the same signature's malleable twin; only low s passes."""
    s = _valid_legacy()
    twin_v = legacy_v(1, 1 - s.signature.y_parity)
    with pytest.raises(SignatureError, match="high"):
        decode_transaction(_legacy_with(v=twin_v, s=SECP256K1_N - s.signature.s))


def test_typed_y_parity_must_be_bit() -> None:
    tx = DynamicFeeTx(
        chain_id=1, nonce=0, max_priority_fee_per_gas=1, max_fee_per_gas=2, gas=21000, to=TO
    )
    signed = sign_transaction(tx, KEY)
    fields = rlp.decode(signed.raw[1:])
    assert isinstance(fields, list)
    fields[9] = b"\x02"
    with pytest.raises(DecodingError, match="y_parity exceeds 1"):
        decode_transaction(b"\x02" + rlp.encode(fields))


def test_split_legacy_v() -> None:
    assert split_legacy_v(27) == (None, 0)
    assert split_legacy_v(28) == (None, 1)
    assert split_legacy_v(37) == (1, 0)
    assert split_legacy_v(62710) == (31337, 1)
    assert legacy_v(31337, 1) == 62710
    for bad in (0, 26, 29, 30, 34):
        with pytest.raises(SignatureError):
            split_legacy_v(bad)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"nonce": 2**64}, "nonce"),
        ({"nonce": -1}, "nonce"),
        ({"nonce": True}, "nonce"),
        ({"gas": 2**64}, "gas"),
        ({"value": 2**256}, "value"),
        ({"max_fee_per_gas": 2**256}, "max_fee_per_gas"),
        ({"chain_id": 2**64}, "chain_id"),
        ({"to": b"\x01" * 19}, "20-byte"),
        ({"to": "0x" + "01" * 20}, "must be bytes"),
        ({"data": "text"}, "data must be bytes"),
        ({"access_list": [(b"\x01" * 20, [b"\x00" * 31])]}, "32 bytes"),
        ({"access_list": [(b"\x01" * 19, [])]}, "20 bytes"),
        ({"access_list": [b"x"]}, "entry"),
    ],
)
def test_constructor_validation(kwargs: dict[str, Any], match: str) -> None:
    base: dict[str, Any] = {
        "chain_id": 1,
        "nonce": 0,
        "max_priority_fee_per_gas": 1,
        "max_fee_per_gas": 2,
        "gas": 21000,
        "to": TO,
    }
    with pytest.raises(DecodingError, match=match):
        DynamicFeeTx(**{**base, **kwargs})


def test_access_list_is_normalised_to_tuples() -> None:
    tx = AccessListTx(
        chain_id=1,
        nonce=0,
        gas_price=1,
        gas=30000,
        to=None,
        access_list=[[bytearray(b"\x01" * 20), [b"\x02" * 32]]],
    )
    assert tx.access_list == ((b"\x01" * 20, (b"\x02" * 32,)),)
    hash(tx)  # frozen and hashable


def test_signed_transaction_derives_everything() -> None:
    s = _valid_legacy()
    assert s.sender == KEY.address
    assert s.chain_id == 1 and s.tx_type == 0 and s.v in (37, 38)
    with pytest.raises(AttributeError):
        s.hash = b"\x00" * 32  # type: ignore[misc]
    with pytest.raises(TypeError):
        SignedTransaction(tx=s.tx, signature=s.signature, raw=b"")  # type: ignore[call-arg]
    assert "46" * 32 not in repr(s)


# --- RPC JSON robustness ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patch", "match"),
    [
        ({"nonce": "0x1_0"}, "not hexadecimal"),
        ({"nonce": "0x"}, "empty quantity"),
        ({"nonce": 5}, "hex string"),
        ({"input": "0x123"}, "odd number"),
        ({"input": "0x12 34"}, "not hexadecimal"),
        ({"to": "0x1234"}, "20 bytes"),
        ({"accessList": {}}, "must be a list"),
        ({"yParity": "0x0"}, "disagree"),
        ({"type": "0x80"}, "outside"),
        ({"gas": "0x10000000000000000"}, "exceeds"),
    ],
)
def test_rpc_malformed_objects(patch: dict[str, Any], match: str) -> None:
    obj = {**_anvil_block()["block"]["transactions"][0], **patch}
    with pytest.raises(DecodingError, match=match):
        transaction_from_rpc(obj)


def test_rpc_missing_field() -> None:
    obj = dict(_anvil_block()["block"]["transactions"][0])
    del obj["maxFeePerGas"]
    with pytest.raises(DecodingError, match="missing field 'maxFeePerGas'"):
        transaction_from_rpc(obj)


_JSON_KEYS = [
    "type",
    "chainId",
    "nonce",
    "gas",
    "gasPrice",
    "maxFeePerGas",
    "maxPriorityFeePerGas",
    "to",
    "value",
    "input",
    "accessList",
    "v",
    "yParity",
    "r",
    "s",
    "hash",
    "maxFeePerBlobGas",
    "blobVersionedHashes",
    "authorizationList",
]
_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from(["0x", "0x0", "0x1", "0x2", "0x3", "0x4", "0x7f", "0x" + "11" * 20])
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(_JSON_KEYS), inner),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(_JSON_KEYS), _json_values))
def test_rpc_random_objects_raise_only_lightpost_errors(obj: dict[str, Any]) -> None:
    with contextlib.suppress(LightpostError):
        transaction_from_rpc(obj)


# --- hypothesis: round trips and fuzzing -------------------------------------------------------

keys = st.integers(1, SECP256K1_N - 1).map(lambda k: PrivateKey(k.to_bytes(32, "big")))
u64 = st.integers(0, 2**64 - 1)
u256 = st.integers(0, 2**256 - 1)
addresses = st.binary(min_size=20, max_size=20)
targets = st.none() | addresses
payloads = st.binary(max_size=300)
access_lists = st.lists(
    st.tuples(addresses, st.lists(st.binary(min_size=32, max_size=32), max_size=3).map(tuple)),
    max_size=3,
).map(tuple)

legacy_txs = st.builds(
    LegacyTx,
    chain_id=st.none() | u64,
    nonce=u64,
    gas_price=u256,
    gas=u64,
    to=targets,
    value=u256,
    data=payloads,
)
access_list_txs = st.builds(
    AccessListTx,
    chain_id=u64,
    nonce=u64,
    gas_price=u256,
    gas=u64,
    to=targets,
    value=u256,
    data=payloads,
    access_list=access_lists,
)
dynamic_fee_txs = st.builds(
    DynamicFeeTx,
    chain_id=u64,
    nonce=u64,
    max_priority_fee_per_gas=u256,
    max_fee_per_gas=u256,
    gas=u64,
    to=targets,
    value=u256,
    data=payloads,
    access_list=access_lists,
)
any_tx = st.one_of(legacy_txs, access_list_txs, dynamic_fee_txs)


@settings(max_examples=150, deadline=None)
@given(tx=any_tx, key=keys)
def test_round_trip(tx: Transaction, key: PrivateKey) -> None:
    signed = sign_transaction(tx, key)
    decoded = decode_transaction(signed.raw, chain_id=tx.chain_id)
    assert decoded == signed
    assert isinstance(decoded, SignedTransaction)
    assert decoded.tx == tx
    assert decoded.sender == key.address


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_lightpost_errors(raw: bytes) -> None:
    with contextlib.suppress(LightpostError):
        decode_transaction(raw)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([b"\x01", b"\x02", b"\x03", b"\x04", b""]),
    st.lists(st.binary(max_size=40) | st.lists(st.binary(max_size=33), max_size=3), max_size=14),
)
def test_random_rlp_lists_raise_only_lightpost_errors(prefix: bytes, items: list[Any]) -> None:
    """Structurally plausible inputs reach the field decoders, not just the RLP layer."""
    with contextlib.suppress(LightpostError):
        decode_transaction(prefix + rlp.encode(items))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tx=any_tx, position=st.integers(0, 10_000), byte=st.integers(0, 255))
def test_mutated_transactions_raise_only_lightpost_errors(
    tx: Transaction, position: int, byte: int
) -> None:
    raw = bytearray(sign_transaction(tx, KEY).raw)
    raw[position % len(raw)] = byte
    try:
        decoded = decode_transaction(bytes(raw))
    except LightpostError:
        return
    assert decoded.raw == bytes(raw)


# --- eth-account cross-check, both ways ---------------------------------------------------


def _key32(key: Any) -> bytes:
    # eth-account's as_dict() renders storage keys as ints.
    return key if isinstance(key, bytes) else int(key).to_bytes(32, "big")


def _eth_account_view(raw: bytes) -> dict[str, Any]:
    """Fields as eth-account 0.14 decodes them, normalised to lightpost's shapes."""
    if raw[0] <= 0x7F:
        d = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()
    else:
        d = dict(EthAccountLegacyTx.from_bytes(raw).as_dict())
    to = bytes(d["to"]) if d.get("to") else None
    access = tuple(
        (
            bytes(e["address"]),
            tuple(
                k if isinstance(k, bytes) else int(k).to_bytes(32, "big") for k in e["storageKeys"]
            ),
        )
        for e in d.get("accessList", ())
    )
    return {
        "nonce": d["nonce"],
        "gas": d["gas"],
        "to": to,
        "value": d["value"],
        "data": bytes(d["data"]),
        "access_list": access,
        "v": d["v"],
        "r": d["r"],
        "s": d["s"],
    }


def _lightpost_view(signed: SignedTransaction) -> dict[str, Any]:
    return {
        "nonce": signed.tx.nonce,
        "gas": signed.tx.gas,
        "to": signed.tx.to,
        "value": signed.tx.value,
        "data": signed.tx.data,
        "access_list": getattr(signed.tx, "access_list", ()),
        "v": signed.v,
        "r": signed.signature.r,
        "s": signed.signature.s,
    }


@settings(max_examples=60, deadline=None)
@given(tx=any_tx, key=keys)
def test_lightpost_signed_decoded_by_eth_account(tx: Transaction, key: PrivateKey) -> None:
    signed = sign_transaction(tx, key)
    assert _eth_account_view(signed.raw) == _lightpost_view(signed)
    recovered = Account.recover_transaction(signed.raw)
    assert bytes.fromhex(recovered[2:]) == key.address


def _eth_account_dict(tx: Transaction) -> dict[str, Any]:
    d: dict[str, Any] = {
        "nonce": tx.nonce,
        "gas": tx.gas,
        "value": tx.value,
        "data": tx.data,
        "to": to_checksum_address(tx.to) if tx.to is not None else b"",
    }
    if tx.chain_id is not None:
        d["chainId"] = tx.chain_id
    if isinstance(tx, (LegacyTx, AccessListTx)):
        d["gasPrice"] = tx.gas_price
    else:
        d["maxFeePerGas"] = tx.max_fee_per_gas
        d["maxPriorityFeePerGas"] = tx.max_priority_fee_per_gas
    if not isinstance(tx, LegacyTx):
        d["type"] = tx.tx_type
        d["accessList"] = [
            {"address": to_checksum_address(a), "storageKeys": ["0x" + k.hex() for k in ks]}
            for a, ks in tx.access_list
        ]
    return d


# eth-account needs a chain id >= 1 for EIP-155 and rejects empty `to` via "to": b""
# only for creations it builds itself; keep its inputs in its validated domain.
_eth_account_txs = st.one_of(
    legacy_txs.filter(lambda t: t.chain_id != 0),
    access_list_txs,
    dynamic_fee_txs,
)


@settings(max_examples=60, deadline=None)
@given(tx=_eth_account_txs, key=keys)
def test_eth_account_signed_decoded_by_lightpost(tx: Transaction, key: PrivateKey) -> None:
    theirs = Account.sign_transaction(_eth_account_dict(tx), key.secret_bytes())
    ours = decode_transaction(bytes(theirs.raw_transaction))
    assert isinstance(ours, SignedTransaction)
    assert ours.tx == tx
    assert ours.hash == bytes(theirs.hash)
    assert ours.sender == key.address
    assert (ours.v, ours.signature.r, ours.signature.s) == (theirs.v, theirs.r, theirs.s)
    # Both sign deterministically (RFC 6979): the same bytes.
    assert sign_transaction(tx, key).raw == bytes(theirs.raw_transaction)


def test_signature_type_is_lightpost_signature() -> None:
    s = _valid_legacy()
    assert isinstance(s.signature, Signature)


def test_signing_checks_the_recovered_sender_is_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    key = PrivateKey(bytes([7]) * 32)
    other = PrivateKey(bytes([8]) * 32)
    tx = DynamicFeeTx(
        chain_id=1,
        nonce=0,
        max_priority_fee_per_gas=1,
        max_fee_per_gas=2,
        gas=21_000,
        to=bytes(20),
        value=0,
        data=b"",
    )
    assert sign_transaction(tx, key).sender == key.address
    real = PrivateKey.sign_hash
    # a fault in signing: the signature that comes back is not this key's
    monkeypatch.setattr(PrivateKey, "sign_hash", lambda self, h: real(other, h))
    with pytest.raises(SignatureError, match="self-check"):
        sign_transaction(tx, key)
