"""The sync-committee light client (lightpost_beacon.lightclient) on every case under
../shared/vectors/beacon: the official minimal sync cases (Deneb, Electra), the generated Fulu and
Electra cases and update rankings, the real mainnet bootstrap and updates; and tampered inputs,
each refused with its named rule."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from lightpost.core.header import BlockHeader, header_hash
from lightpost.errors import BeaconRefused, ProofError
from lightpost_beacon import containers as beacon
from lightpost_beacon import lightclient
from lightpost_beacon.containers import ChainConfig, LightClientUpdate
from lightpost_beacon.lightclient import COMMITTEE_STEPS, CommitteeStep, Phase, Store
from tests.conftest import VECTORS, vector_path
from tests.core.beacon_vectors import config_from_yaml, read_ssz, read_yaml, schemas

pytest.importorskip("py_arkworks_bls12381", reason="the lightpost[beacon] extra")
from lightpost_beacon.bls import load_bls

BLS = load_bls()
BEACON = VECTORS / "beacon"


def _case_dirs(marker: str) -> list[str]:
    found = sorted(str(p.parent.relative_to(BEACON)) for p in BEACON.rglob(marker))
    return found or ["missing"]


class Case:
    """One spec-test folder: its config, schemas and files."""

    def __init__(self, rel: str) -> None:
        self.dir = vector_path("beacon", rel)
        self.fork = next(p for p in Path(rel).parts if p in beacon.FORK_NAMES)
        self.meta = read_yaml(self.dir / "meta.yaml")
        gvr = bytes.fromhex(self.meta.get("genesis_validators_root", "0x" + "00" * 32)[2:])
        config_file = self.dir / "config.yaml"
        self.config = (
            config_from_yaml(config_file, gvr)
            if config_file.exists()
            else config_from_yaml(_sibling_config(self.dir), gvr)
        )
        self.schemas = schemas(self.fork, self.config.committee_size)

    def update(self, name: str) -> LightClientUpdate:
        raw = read_ssz(self.dir / f"{name}.ssz_snappy", self.schemas["LightClientUpdate"])
        return beacon.update_from_json(raw, self.config)

    def store(self) -> Store:
        raw = read_ssz(self.dir / "bootstrap.ssz_snappy", self.schemas["LightClientBootstrap"])
        data = beacon.bootstrap_from_json({"version": self.fork, "data": raw}, self.config)
        root = bytes.fromhex(self.meta["trusted_block_root"][2:])
        slot = data.header.beacon.slot
        return lightclient.bootstrap(self.config, root, data, current_slot=slot)


def _sibling_config(folder: Path) -> Path:
    """update_ranking folders carry no config.yaml: the sync cases' of the same fork apply."""
    return next((folder.parents[2] / "sync").rglob("config.yaml"))


def _check(config: ChainConfig, store: Store, checks: dict[str, Any]) -> None:
    for name in ("finalized_header", "optimistic_header"):
        if name not in checks:
            continue
        header = getattr(store, name)
        want = checks[name]
        assert header.beacon.slot == want["slot"], name
        assert "0x" + header.beacon.root().hex() == want["beacon_root"], name
        if "execution_root" in want:
            assert "0x" + lightclient.execution_root(config, header).hex() == want["execution_root"]


@pytest.mark.parametrize("rel", _case_dirs("steps.yaml"))
def test_sync_cases(rel: str) -> None:
    case = Case(rel)
    store = case.store()
    for step in read_yaml(case.dir / "steps.yaml"):
        ((kind, args),) = step.items()
        slot = args["current_slot"]
        if kind == "process_update":
            update = case.update(args["update"])
            store = lightclient.process_update(
                case.config, store, update, current_slot=slot, bls=BLS
            )
        else:
            assert kind == "force_update"
            store = lightclient.force_update(case.config, store, current_slot=slot)
        _check(case.config, store, args["checks"])


@pytest.mark.parametrize("rel", _case_dirs("update_ranking/meta.yaml"))
def test_update_ranking(rel: str) -> None:
    case = Case(rel)
    count = case.meta["updates_count"]
    updates = [case.update(f"updates_{i}") for i in range(count)]
    for better, worse in pairwise(updates):
        assert not lightclient.is_better_update(case.config, worse, better)


@pytest.mark.parametrize(
    ("proof", "gindex"),
    [
        ("BeaconState/current_sync_committee_merkle_proof", 86),
        ("BeaconState/next_sync_committee_merkle_proof", 87),
        ("BeaconState/finality_root_merkle_proof", 169),
        ("BeaconBlockBody/execution_merkle_proof", 25),
    ],
)
@pytest.mark.parametrize("fork", ["electra", "fulu"])
def test_generalized_indices_match_the_single_merkle_proofs(
    fork: str, proof: str, gindex: int
) -> None:
    folder = vector_path(
        "beacon", "generated", "minimal", fork, "light_client", "single_merkle_proof"
    )
    case = read_yaml(folder / proof / "proof.yaml")
    constants = {
        86: lightclient.CURRENT_SYNC_COMMITTEE_GINDEX_ELECTRA,
        87: lightclient.NEXT_SYNC_COMMITTEE_GINDEX_ELECTRA,
        169: lightclient.FINALIZED_ROOT_GINDEX_ELECTRA,
        25: lightclient.EXECUTION_PAYLOAD_GINDEX,
    }
    assert case["leaf_index"] == gindex == constants[gindex]
    assert len(case["branch"]) == gindex.bit_length() - 1


# --- the real mainnet data (Capella, periods 862-867, 512 signers) ---

MAINNET_DATA = ("beacon", "official-minimal-and-mainnet", "ethereum", "testdata")


def _mainnet(name: str) -> Any:
    return json.loads(vector_path(*MAINNET_DATA, f"{name}.json").read_bytes())


def test_mainnet_bootstrap_updates_finality_and_optimistic() -> None:
    config = beacon.MAINNET
    data = beacon.bootstrap_from_json(_mainnet("bootstrap"), config)
    root = data.header.beacon.root()
    store = lightclient.bootstrap(config, root, data, current_slot=data.header.beacon.slot + 1)
    updates = beacon.updates_from_json(_mainnet("updates"), config)
    finality = beacon.updates_from_json(_mainnet("finality"), config)
    optimistic = beacon.updates_from_json(_mainnet("optimistic"), config)
    now = optimistic[0].signature_slot
    periods = []
    for update in [*updates, *finality, *optimistic]:
        store = lightclient.process_update(config, store, update, current_slot=now, bls=BLS)
        periods.append(config.period_at(store.finalized_header.beacon.slot))
    assert periods == [862, 863, 864, 865, 866, 867, 867, 867]  # a hand-over per update
    assert store.finalized_header == finality[0].finalized_header
    assert store.optimistic_header == optimistic[0].attested_header
    execution = store.optimistic_header.execution
    assert execution is not None and execution.block_number == 17923113
    # the execution block hash is proven against the signed beacon header's body root
    assert execution.block_hash.hex().startswith("3c015340e234ff7f8e")


def test_mainnet_bootstrap_refuses_the_wrong_root_and_a_stale_checkpoint() -> None:
    config = beacon.MAINNET
    data = beacon.bootstrap_from_json(_mainnet("bootstrap"), config)
    root = data.header.beacon.root()
    slot = data.header.beacon.slot
    with pytest.raises(BeaconRefused) as err:
        lightclient.bootstrap(config, bytes(32), data, current_slot=slot)
    assert err.value.rule == "trusted_root"
    old = slot + lightclient.DEFAULT_MAX_CHECKPOINT_AGE_S // config.seconds_per_slot + 1
    with pytest.raises(BeaconRefused) as err:
        lightclient.bootstrap(config, root, data, current_slot=old)
    assert err.value.rule == "checkpoint_age"
    with pytest.raises(BeaconRefused) as err:
        lightclient.bootstrap(config, root, data, current_slot=slot - 1)
    assert err.value.rule == "future_slot"
    lightclient.bootstrap(config, root, data, current_slot=old, max_age_slots=old - slot)


# --- tampered inputs, each refused with its named rule ---

SYNC = "generated/minimal/electra/light_client/sync/pyspec_tests/light_client_sync"
FIRST = "update_0xcf09cb06462ee7439d7d4316a8d617497286efb2c1c43668f4c58355cb65a520_sf"
FIRST_SLOT = 41


def _flip(b: bytes) -> bytes:
    return bytes([b[0] ^ 1]) + b[1:]


def _header(u: LightClientUpdate, **beacon_fields: Any) -> LightClientUpdate:
    h = u.attested_header
    return replace(u, attested_header=replace(h, beacon=replace(h.beacon, **beacon_fields)))


def _execution(u: LightClientUpdate, **fields: Any) -> LightClientUpdate:
    h = u.attested_header
    assert h.execution is not None
    return replace(u, attested_header=replace(h, execution=replace(h.execution, **fields)))


TAMPERS: list[tuple[str, Callable[[LightClientUpdate], LightClientUpdate], str]] = [
    (
        "bad signature",
        lambda u: replace(u, sync_committee_signature=_flip(u.sync_committee_signature)),
        "signature",
    ),
    (
        "signature of another message",
        lambda u: _header(u, proposer_index=u.attested_header.beacon.proposer_index + 1),
        "signature",
    ),
    (
        "a signer dropped",
        lambda u: replace(u, sync_committee_bits=(False, *u.sync_committee_bits[1:])),
        "signature",
    ),
    (
        "no signers",
        lambda u: replace(u, sync_committee_bits=(False,) * len(u.sync_committee_bits)),
        "participants",
    ),
    (
        "bits of the wrong length",
        lambda u: replace(u, sync_committee_bits=u.sync_committee_bits[:-8]),
        "participants",
    ),
    (
        "wrong finality branch",
        lambda u: replace(u, finality_branch=(_flip(u.finality_branch[0]), *u.finality_branch[1:])),
        "finality_branch",
    ),
    (
        "finalized header not the proven one",
        lambda u: replace(
            u,
            finalized_header=replace(
                u.finalized_header,
                beacon=replace(u.finalized_header.beacon, slot=u.finalized_header.beacon.slot + 1),
            ),
        ),
        "finality_branch",
    ),
    (
        "finalized header without branch",
        lambda u: replace(u, finality_branch=(bytes(32),) * len(u.finality_branch)),
        "finality_branch",
    ),
    (
        "wrong next-committee branch",
        lambda u: replace(
            u,
            next_sync_committee_branch=(
                _flip(u.next_sync_committee_branch[0]),
                *u.next_sync_committee_branch[1:],
            ),
        ),
        "committee_branch",
    ),
    (
        "execution block hash not the proven one",
        lambda u: _execution(u, block_hash=_flip(u.attested_header.execution.block_hash)),
        "execution_branch",
    ),  # type: ignore[union-attr]
    (
        "execution state root not the proven one",
        lambda u: _execution(u, state_root=_flip(u.attested_header.execution.state_root)),
        "execution_branch",
    ),  # type: ignore[union-attr]
    ("future signature slot", lambda u: replace(u, signature_slot=FIRST_SLOT + 1), "future_slot"),
    (
        "attested after signature",
        lambda u: replace(u, signature_slot=u.attested_header.beacon.slot),
        "slot_order",
    ),
    (
        "signature period skipped",
        lambda u: replace(u, signature_slot=u.signature_slot + 2 * 64),
        "period",
    ),
]


@pytest.mark.parametrize(("what", "tamper", "rule"), TAMPERS, ids=[t[0] for t in TAMPERS])
def test_tampered_update_is_refused(
    what: str, tamper: Callable[[LightClientUpdate], LightClientUpdate], rule: str
) -> None:
    case = Case(SYNC)
    store = case.store()
    good = case.update(FIRST)
    lightclient.process_update(case.config, store, good, current_slot=FIRST_SLOT, bls=BLS)
    slot = 10**6 if rule == "period" else FIRST_SLOT
    with pytest.raises(BeaconRefused) as err:
        lightclient.process_update(case.config, store, tamper(good), current_slot=slot, bls=BLS)
    assert err.value.rule == rule, what


def test_stale_update_is_refused_and_a_wrong_committee_does_not_verify() -> None:
    case = Case(SYNC)
    store = case.store()
    good = case.update(FIRST)
    after = lightclient.process_update(case.config, store, good, current_slot=FIRST_SLOT, bls=BLS)
    assert after.finalized_header.beacon.slot == 24
    stale = replace(good, finality_branch=(bytes(32),) * len(good.finality_branch))
    stale = replace(stale, finalized_header=beacon.LightClientHeader())
    stale = replace(stale, next_sync_committee_branch=(bytes(32),) * 6, next_sync_committee=None)
    older = _header(stale, slot=after.finalized_header.beacon.slot)
    with pytest.raises(BeaconRefused) as err:
        lightclient.process_update(case.config, after, older, current_slot=FIRST_SLOT, bls=BLS)
    assert err.value.rule == "stale"
    # an update signed by the right keys, checked against another committee, fails
    assert after.next_sync_committee is not None
    mainnet = beacon.bootstrap_from_json(_mainnet("bootstrap"), beacon.MAINNET)
    other = mainnet.current_sync_committee.pubkeys[: case.config.committee_size]
    stranger = beacon.SyncCommittee(pubkeys=other, aggregate_pubkey=bytes(48))
    wrong = replace(store, current_sync_committee=stranger)
    with pytest.raises(BeaconRefused) as err:
        lightclient.process_update(case.config, wrong, good, current_slot=FIRST_SLOT, bls=BLS)
    assert err.value.rule == "signature"


def test_bootstrap_with_another_committee_is_refused() -> None:
    case = Case(SYNC)
    raw = read_ssz(case.dir / "bootstrap.ssz_snappy", case.schemas["LightClientBootstrap"])
    raw["current_sync_committee"]["pubkeys"].reverse()
    data = beacon.bootstrap_from_json({"version": "electra", "data": raw}, case.config)
    root = bytes.fromhex(case.meta["trusted_block_root"][2:])
    with pytest.raises(BeaconRefused) as err:
        lightclient.bootstrap(case.config, root, data, current_slot=data.header.beacon.slot)
    assert err.value.rule == "committee_branch"


# --- THE committee table ---


@pytest.mark.parametrize(
    ("phase", "delta", "step"),
    [
        (Phase.NEXT_UNKNOWN, 0, CommitteeStep.LEARN_NEXT),
        (Phase.NEXT_KNOWN, 0, CommitteeStep.KEEP),
        (Phase.NEXT_KNOWN, 1, CommitteeStep.ROTATE),
        (Phase.NEXT_UNKNOWN, 1, None),
        (Phase.NEXT_KNOWN, 2, None),
        (Phase.NEXT_KNOWN, -1, None),
    ],
)
def test_committee_table(phase: Phase, delta: int, step: CommitteeStep | None) -> None:
    assert COMMITTEE_STEPS.get((phase, delta)) is step


# --- what to fetch (Altair light-client.md, sync process step 4) ---

P = 8 * 8  # slots per period, minimal preset


@pytest.mark.parametrize(
    ("finalized", "optimistic", "next_known", "current", "wanted"),
    [
        (5 * P, 5 * P + 3, False, 5 * P + 9, (5, 1)),  # next committee unknown
        (5 * P, 6 * P + 1, False, 6 * P + 9, None),  # optimistic ahead: wait for finality
        (5 * P, 5 * P, True, 6 * P + 9, None),  # within one period: follow the head
        (5 * P, 5 * P, True, 9 * P, (6, 3)),  # behind: one update per missed period
        (5 * P, 5 * P, True, 50 * P, (6, lightclient.MAX_UPDATES_PER_REQUEST)),  # bounded
    ],
)
def test_updates_wanted(
    finalized: int, optimistic: int, next_known: bool, current: int, wanted: object
) -> None:
    case = Case(SYNC)
    store = case.store()
    header = store.finalized_header
    store = replace(
        store,
        finalized_header=replace(header, beacon=replace(header.beacon, slot=finalized)),
        optimistic_header=replace(header, beacon=replace(header.beacon, slot=optimistic)),
        next_sync_committee=store.current_sync_committee if next_known else None,
    )
    assert lightclient.updates_wanted(case.config, store, current) == wanted


# --- walking back from a proven execution block ---


def _chain(length: int) -> list[BlockHeader]:
    headers = []
    parent = bytes(32)
    for number in range(length):
        h = BlockHeader(
            parent_hash=parent, ommers_hash=bytes(32), coinbase=bytes(20), state_root=bytes(32),
            transactions_root=bytes(32), receipts_root=bytes(32), logs_bloom=bytes(256),
            difficulty=0, number=number, gas_limit=30_000_000, gas_used=0, timestamp=number,
            extra_data=b"", mix_hash=bytes(32), nonce=bytes(8),
        )  # fmt: skip
        headers.append(h)
        parent = header_hash(h)
    return headers[::-1]  # newest first


@pytest.mark.parametrize(
    ("mutate", "ok"),
    [
        (lambda hs: hs, True),
        (lambda hs: hs[:1], True),
        (lambda hs: [hs[0], *hs[2:]], False),  # a block left out
        (lambda hs: [replace(hs[0], gas_used=1), *hs[1:]], False),  # not the proven block
        (lambda hs: [*hs[:3], replace(hs[3], timestamp=99), *hs[4:]], False),  # a forged ancestor
        (lambda hs: [], False),
    ],
)
def test_walk_back_from_a_proven_block(mutate: Callable[[list[Any]], list[Any]], ok: bool) -> None:
    headers = _chain(6)
    proven = header_hash(headers[0])
    chosen = mutate(headers)
    if ok:
        assert lightclient.walk_back(proven, chosen) == chosen[-1]
    else:
        with pytest.raises(ProofError):
            lightclient.walk_back(proven, chosen)


FINAL, OPTIMISTIC = "finality_update", "optimistic_update"


@pytest.mark.parametrize(
    ("slot", "finality_seen", "routes"),
    [
        (100, None, (FINAL, OPTIMISTIC)),  # first sync: both
        (101, 100, (OPTIMISTIC,)),  # next slot, finality seen this epoch (3)
        (127, 96, (OPTIMISTIC,)),  # the epoch's last slot, finality seen at its first
        (128, 100, (FINAL, OPTIMISTIC)),  # a new epoch (4): finality may have moved
        (129, 96, (FINAL, OPTIMISTIC)),  # still no finality this epoch: keep asking
        (130, 129, (OPTIMISTIC,)),  # seen in this epoch: done until the next
        (101, None, (FINAL, OPTIMISTIC)),  # finality never seen
    ],
)
def test_head_routes(slot: int, finality_seen: int | None, routes: tuple[str, ...]) -> None:
    got = lightclient.head_routes(beacon.MAINNET, current_slot=slot, finality_seen=finality_seen)
    assert got == routes
