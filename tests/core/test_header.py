"""Block headers: hash from JSON and raw RLP, every fork's fields, tamper detection."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from lightpost.core import rlp
from lightpost.core.hashing import keccak256
from lightpost.core.header import (
    HEADER_FIELDS,
    LEGACY_FIELD_COUNT,
    BlockHeader,
    decode_header,
    encode_header,
    header_from_rpc,
    header_hash,
    verify_header,
)
from lightpost.core.trie import ordered_trie_root
from lightpost.errors import DecodingError, LightpostError, ProofError
from tests.core.chaindata import (
    ROOTS_DIRS,
    anvil_block,
    hx,
    io_result,
    json_values,
    load_json,
    raw_block,
)

ANVIL_BLOCKS = ("block", "block_1", "genesis")


@pytest.mark.parametrize("name", ANVIL_BLOCKS)
def test_anvil_current_fork_header_hash(name: str) -> None:
    obj = anvil_block()[name]
    header = verify_header(obj)
    assert header.requests_hash is not None  # every Prague field is present and hashed
    assert header_hash(header) == hx(obj["hash"])
    assert decode_header(encode_header(header)) == header


def test_anvil_chain_links() -> None:
    data = anvil_block()
    assert verify_header(data["block"]).parent_hash == header_hash(verify_header(data["block_1"]))
    assert verify_header(data["block_1"]).parent_hash == header_hash(verify_header(data["genesis"]))


def _goerli() -> Any:
    return load_json("block", "testdata-from-rpc-goerli-london.json")


def test_goerli_london_header_hash() -> None:
    header = verify_header(_goerli())
    assert header.base_fee_per_gas == 7 and header.withdrawals_root is None
    assert len(encode_header(header)) > 0 and len(rlp.decode(encode_header(header))) == 16  # type: ignore[arg-type]


def _legacy_tx_rlp(tx: dict[str, str]) -> bytes:
    # TODO(tx.py): minimal legacy encoding kept independent of lightpost.core.tx on purpose.
    q = lambda k: int(tx[k], 16)  # noqa: E731
    return rlp.encode(
        [q("nonce"), q("gasPrice"), q("gas"), hx(tx["to"]), q("value"), hx(tx["input"]),
         q("v"), q("r"), q("s")]
    )  # fmt: skip


def test_goerli_transactions_root() -> None:
    block = _goerli()
    raws = [_legacy_tx_rlp(tx) for tx in block["transactions"]]
    assert [keccak256(r) for r in raws] == [hx(tx["hash"]) for tx in block["transactions"]]
    assert ordered_trie_root(raws) == hx(block["transactionsRoot"])


@pytest.mark.parametrize("directory", ROOTS_DIRS)
def test_raw_header_round_trip(directory: str) -> None:
    header_rlp, _ = raw_block(directory)
    header = decode_header(header_rlp)
    assert encode_header(header) == header_rlp
    assert header.number == 3


def test_raw_header_matches_raw_block() -> None:
    directory = ROOTS_DIRS[1]
    raw_header = hx(io_result(directory, "debug_getRawHeader", "get-block-n.io"))
    assert raw_block(directory)[0] == raw_header
    header = decode_header(raw_header)
    # A Cancun header: withdrawals, blob gas and the beacon root, no requests hash.
    assert header.parent_beacon_block_root is not None and header.requests_hash is None


# --- tamper detection ----------------------------------------------------------------------


def _tweak(value: str, rpc_name: str) -> str:
    if rpc_name == "extraData":
        return value + "00"
    spec = next(f for f in HEADER_FIELDS if f.rpc_name == rpc_name)
    if spec.shape == "int":
        return hex(int(value, 16) + 1)
    return value[:-1] + ("0" if value[-1] != "0" else "1")


@pytest.mark.parametrize("rpc_name", [f.rpc_name for f in HEADER_FIELDS])
def test_any_changed_field_breaks_the_hash(rpc_name: str) -> None:
    obj = anvil_block()["block"]
    obj[rpc_name] = _tweak(obj[rpc_name], rpc_name)
    with pytest.raises(ProofError) as info:
        verify_header(obj)
    assert info.value.kind == "header"


def test_changed_claimed_hash_fails() -> None:
    obj = anvil_block()["block"]
    obj["hash"] = _tweak(obj["hash"], "parentHash")
    with pytest.raises(ProofError):
        verify_header(obj)


def test_dropping_the_last_fork_field_breaks_the_hash() -> None:
    obj = anvil_block()["block"]
    del obj["requestsHash"]
    with pytest.raises(ProofError):
        verify_header(obj)


def test_fork_field_gap_is_rejected() -> None:
    obj = anvil_block()["block"]
    obj["baseFeePerGas"] = None  # null counts as absent, leaving a gap before withdrawalsRoot
    with pytest.raises(DecodingError, match="base_fee_per_gas"):
        verify_header(obj)


def test_null_fork_fields_are_absent() -> None:
    obj = _goerli()
    obj["withdrawalsRoot"] = None
    assert verify_header(obj).withdrawals_root is None


def test_unknown_field_is_refused_unless_allowed() -> None:
    obj = anvil_block()["block"]
    obj["blockAccessListHash"] = "0x" + "11" * 32  # a later fork's header field, say
    with pytest.raises(DecodingError, match="blockAccessListHash"):
        verify_header(obj)
    assert verify_header(obj, extra_allowed={"blockAccessListHash"}).number == 2


@pytest.mark.parametrize(
    "mutate",
    [
        lambda o: o.pop("hash"),
        lambda o: o.pop("stateRoot"),
        lambda o: o.update(number=None),
        lambda o: o.update(nonce="0x00"),
        lambda o: o.update(miner="0x1234"),
        lambda o: o.update(gasUsed=12),
        lambda o: o.update(extraData="0xabc"),
    ],
)
def test_malformed_json_is_a_decoding_error(mutate: Any) -> None:
    obj = anvil_block()["block"]
    mutate(obj)
    with pytest.raises(DecodingError):
        verify_header(obj)


def test_decode_header_rejects_wrong_shapes() -> None:
    header_rlp, _ = raw_block(ROOTS_DIRS[1])
    items = rlp.decode(header_rlp)
    assert isinstance(items, list)
    for bad in (items[:14], [*items, b"\x01" * 32, b"\x02"], [*items[:2], [b""], *items[3:]]):
        with pytest.raises(DecodingError):
            decode_header(rlp.encode(bad))
    with pytest.raises(DecodingError):
        decode_header(rlp.encode(b"header"))


def test_header_rejects_bad_lengths() -> None:
    header = header_from_rpc(anvil_block()["block"])
    with pytest.raises(DecodingError):
        dataclasses.replace(header, coinbase=b"\x00" * 19)
    with pytest.raises(DecodingError):
        dataclasses.replace(header, number=-1)


# --- hypothesis -----------------------------------------------------------------------------


def _field_strategy(shape: str, length: int | None) -> st.SearchStrategy[object]:
    if shape == "int":
        return st.integers(0, 2**256 - 1)
    if length is None:
        return st.binary(max_size=64)
    return st.binary(min_size=length, max_size=length)


@st.composite
def _headers(draw: st.DrawFn) -> BlockHeader:
    count = draw(st.integers(LEGACY_FIELD_COUNT, len(HEADER_FIELDS)))
    kwargs = {f.attr: draw(_field_strategy(f.shape, f.length)) for f in HEADER_FIELDS[:count]}
    return BlockHeader(**kwargs)  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None)
@given(_headers())
def test_header_round_trip(header: BlockHeader) -> None:
    encoded = encode_header(header)
    assert decode_header(encoded) == header
    assert header_hash(header) == keccak256(encoded)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=700))
def test_decode_header_random_bytes(data: bytes) -> None:
    with contextlib.suppress(LightpostError):
        decode_header(data)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([f.rpc_name for f in HEADER_FIELDS] + ["hash", "zzz"]), json_values)
def test_verify_header_random_fields(name: str, value: object) -> None:
    obj = anvil_block()["block"]
    assume(obj.get(name) != value)
    obj[name] = value
    with pytest.raises(LightpostError):
        verify_header(obj)
