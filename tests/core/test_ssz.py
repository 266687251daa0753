"""SSZ merkleization (lightpost_beacon.ssz) and the light-client containers' roots
(lightpost_beacon.containers): a naive reference, the official ssz_static roots (Fulu, minimal), and
hypothesis round trips of the beacon-API JSON codec."""

from __future__ import annotations

import json
from hashlib import sha256
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lightpost.errors import DecodingError
from lightpost_beacon import containers as beacon
from lightpost_beacon import ssz
from tests.conftest import vector_path
from tests.core.beacon_vectors import read_ssz, read_yaml, schemas

# --- merkleization against a naive reference ---


def naive_merkleize(chunks: list[bytes], limit: int | None = None) -> bytes:
    width = 1
    while width < (len(chunks) if limit is None else limit):
        width *= 2
    layer = chunks + [bytes(32)] * (width - len(chunks))
    while len(layer) > 1:
        layer = [sha256(layer[i] + layer[i + 1]).digest() for i in range(0, len(layer), 2)]
    return layer[0]


chunk = st.binary(min_size=32, max_size=32)


@given(st.lists(chunk, max_size=40), st.integers(0, 24))
def test_merkleize_matches_naive(chunks: list[bytes], pad: int) -> None:
    assert ssz.merkleize(chunks) == naive_merkleize(chunks)
    limit = len(chunks) + pad
    assert ssz.merkleize(chunks, limit) == naive_merkleize(chunks, limit)


def test_merkleize_refuses_more_chunks_than_limit() -> None:
    with pytest.raises(ValueError):
        ssz.merkleize([bytes(32)] * 3, 2)


def branch_for(leaves: list[bytes], index: int) -> tuple[list[bytes], bytes]:
    """The Merkle branch of ``leaves[index]`` and the tree's root."""
    layer = list(leaves)
    branch = []
    while len(layer) > 1:
        branch.append(layer[index ^ 1])
        layer = [sha256(layer[i] + layer[i + 1]).digest() for i in range(0, len(layer), 2)]
        index //= 2
    return branch, layer[0]


@given(
    st.integers(1, 6).flatmap(
        lambda d: st.tuples(
            st.just(d),
            st.lists(chunk, min_size=2**d, max_size=2**d, unique=True),
            st.integers(0, 2**d - 1),
        )
    )
)
def test_branch_verifies_and_a_changed_sibling_does_not(case: tuple[int, list[bytes], int]) -> None:
    depth, leaves, index = case
    branch, root = branch_for(leaves, index)
    assert ssz.is_valid_merkle_branch(leaves[index], branch, depth, index, root)
    gindex = (1 << depth) + index
    assert ssz.is_valid_normalized_merkle_branch(leaves[index], branch, gindex, root)
    # a longer vector (a later fork's) is accepted only with zero padding in front
    assert ssz.is_valid_normalized_merkle_branch(leaves[index], [bytes(32), *branch], gindex, root)
    assert not ssz.is_valid_normalized_merkle_branch(
        leaves[index], [b"\1" * 32, *branch], gindex, root
    )
    assert not ssz.is_valid_normalized_merkle_branch(leaves[index], branch[1:], gindex, root)
    tampered = [bytes(x ^ 1 for x in branch[0]), *branch[1:]]
    assert not ssz.is_valid_merkle_branch(leaves[index], tampered, depth, index, root)
    assert not ssz.is_valid_merkle_branch(leaves[index], branch, depth, index ^ 1, root)


# --- the official ssz_static roots (Fulu = Electra containers, minimal preset) ---

STATIC = ("beacon", "generated", "minimal", "fulu", "ssz_static")
SCHEMAS = schemas("fulu", 32)
SIZE = 32


def _cases() -> list[tuple[str, str]]:
    root = Path(__file__).resolve().parents[3] / "shared" / "vectors" / Path(*STATIC)
    if not root.exists():
        return [("missing", "missing")]
    return sorted(
        (p.parent.parent.parent.name, str(p.parent.relative_to(root)))
        for p in root.rglob("roots.yaml")
    )


def _root_of(type_name: str, value: dict[str, object]) -> bytes:
    """The root via the core's containers, and for the containers lightpost does not model, by
    merkleizing the core's roots of their parts."""
    cfg = beacon.ChainConfig(
        genesis_validators_root=bytes(32),
        slots_per_epoch=8,
        epochs_per_period=8,
        committee_size=SIZE,
        forks=(("phase0", 0, bytes(4)),),
    )

    def h(v: object) -> bytes:
        return beacon.header_from_json(v).root()

    def agg(v: dict[str, str]) -> bytes:
        bits = bytes.fromhex(v["sync_committee_bits"][2:])
        return ssz.merkleize(
            [
                ssz.merkleize(ssz.pack_bytes(bits)),
                ssz.bytes_root(bytes.fromhex(v["sync_committee_signature"][2:])),
            ]
        )

    def branch(v: list[str]) -> bytes:
        return ssz.merkleize([bytes.fromhex(x[2:]) for x in v])

    def raw(v: object) -> bytes:
        assert isinstance(v, str)
        return bytes.fromhex(v[2:])

    v: dict[str, object] = value
    if type_name == "BeaconBlockHeader":
        return beacon.header_from_json({"beacon": v}).beacon.root()
    if type_name == "ExecutionPayloadHeader":
        wrapped = {
            "beacon": json.loads(json.dumps(_ZERO_BEACON)),
            "execution": v,
            "execution_branch": [],
        }
        header = beacon.header_from_json(wrapped)
        assert header.execution is not None
        return header.execution.root()
    if type_name == "LightClientHeader":
        return h(v)
    if type_name == "SyncCommittee":
        return beacon.committee_from_json(v, cfg.committee_size).root()
    if type_name == "SyncAggregate":
        return agg(v)  # type: ignore[arg-type]
    if type_name == "ForkData":
        return ssz.merkleize(
            [ssz.bytes_root(raw(v["current_version"])), raw(v["genesis_validators_root"])]
        )
    if type_name == "SigningData":
        return ssz.merkleize([raw(v["object_root"]), raw(v["domain"])])
    if type_name == "SignedBeaconBlockHeader":
        message = beacon.header_from_json({"beacon": v["message"]}).beacon.root()
        return ssz.merkleize([message, ssz.bytes_root(raw(v["signature"]))])
    if type_name == "LightClientBootstrap":
        return ssz.merkleize(
            [
                h(v["header"]),
                beacon.committee_from_json(v["current_sync_committee"], SIZE).root(),
                branch(v["current_sync_committee_branch"]),  # type: ignore[arg-type]
            ]
        )
    update = beacon.update_from_json(v, cfg)
    tail = [agg(v["sync_aggregate"]), ssz.uint64_root(update.signature_slot)]  # type: ignore[arg-type]
    if type_name == "LightClientOptimisticUpdate":
        return ssz.merkleize([h(v["attested_header"]), *tail])
    fin = [h(v["finalized_header"]), branch(v["finality_branch"])]  # type: ignore[arg-type]
    if type_name == "LightClientFinalityUpdate":
        return ssz.merkleize([h(v["attested_header"]), *fin, *tail])
    assert type_name == "LightClientUpdate"
    nsc = beacon.committee_from_json(v["next_sync_committee"], SIZE).root()
    return ssz.merkleize(
        [h(v["attested_header"]), nsc, branch(v["next_sync_committee_branch"]), *fin, *tail]  # type: ignore[arg-type]
    )


_ZERO_BEACON = {
    "slot": "0",
    "proposer_index": "0",
    "parent_root": "0x" + "00" * 32,
    "state_root": "0x" + "00" * 32,
    "body_root": "0x" + "00" * 32,
}


@pytest.mark.parametrize(("type_name", "case"), _cases())
def test_ssz_static_roots(type_name: str, case: str) -> None:
    folder = vector_path(*STATIC, case)
    value = read_ssz(folder / "serialized.ssz_snappy", SCHEMAS[type_name])
    expected = read_yaml(folder / "roots.yaml")["root"]
    assert "0x" + _root_of(type_name, value).hex() == expected


# --- the JSON codec: round trips and bounds ---

b32 = st.binary(min_size=32, max_size=32)
u64 = st.integers(0, 2**64 - 1)
beacon_headers = st.builds(
    beacon.BeaconBlockHeader,
    slot=u64,
    proposer_index=u64,
    parent_root=b32,
    state_root=b32,
    body_root=b32,
)
blob = st.one_of(st.none(), u64)
executions = st.builds(
    lambda gas, extra, fee, bloom, b: beacon.ExecutionPayloadHeader(
        block_number=gas,
        extra_data=extra,
        base_fee_per_gas=fee,
        logs_bloom=bloom,
        fee_recipient=bloom[:20],
        blob_gas_used=b,
        excess_blob_gas=None if b is None else gas,
    ),
    u64,
    st.binary(max_size=32),
    st.integers(0, 2**256 - 1),
    st.binary(min_size=256, max_size=256),
    blob,
)
headers = st.one_of(
    st.builds(beacon.LightClientHeader, beacon=beacon_headers),
    st.builds(
        beacon.LightClientHeader,
        beacon=beacon_headers,
        execution=executions,
        execution_branch=st.lists(b32, min_size=4, max_size=4).map(tuple),
    ),
)


@given(headers)
def test_header_json_round_trip(header: beacon.LightClientHeader) -> None:
    assert beacon.header_from_json(header_to := beacon.header_to_json(header)) == header
    assert json.loads(json.dumps(header_to)) == header_to


@given(
    st.lists(st.binary(min_size=48, max_size=48), min_size=4, max_size=4),
    st.binary(min_size=48, max_size=48),
)
def test_committee_json_round_trip(keys: list[bytes], aggregate: bytes) -> None:
    committee = beacon.SyncCommittee(pubkeys=tuple(keys), aggregate_pubkey=aggregate)
    assert beacon.committee_from_json(beacon.committee_to_json(committee), 4) == committee


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda j: j["beacon"].update(slot="-1"), "slot"),
        (lambda j: j["beacon"].update(slot=str(2**64)), "slot"),
        (lambda j: j["beacon"].update(slot=1), "slot"),
        (lambda j: j["beacon"].update(state_root="0x00"), "state_root"),
        (lambda j: j["beacon"].update(body_root="00" * 32), "body_root"),
        (lambda j: j["beacon"].pop("parent_root"), "parent_root"),
        (lambda j: j["execution"].update(extra_data="0x" + "00" * 33), "extra_data"),
        (lambda j: j["execution"].update(base_fee_per_gas=str(2**256)), "base_fee_per_gas"),
        (lambda j: j.update(execution_branch=["0x" + "00" * 32] * 9), "execution_branch"),
    ],
)
def test_header_json_refuses_malformed(mutate: object, reason: str) -> None:
    good = beacon.header_to_json(
        beacon.LightClientHeader(
            execution=beacon.ExecutionPayloadHeader(), execution_branch=(bytes(32),) * 4
        )
    )
    mutate(good)  # type: ignore[operator]
    with pytest.raises(DecodingError, match=reason):
        beacon.header_from_json(good)


def test_answers_are_bounded() -> None:
    cfg = beacon.MAINNET
    with pytest.raises(DecodingError, match="more than"):
        beacon.updates_from_json([{}] * (beacon.MAX_UPDATES_PER_ANSWER + 1), cfg)
    with pytest.raises(DecodingError, match="fork"):
        beacon.bootstrap_from_json({"version": "gloas", "data": {}}, cfg)
    with pytest.raises(DecodingError, match="pubkeys"):
        beacon.committee_from_json({"pubkeys": ["0x" + "00" * 48] * 511}, 512)
