"""EIP-1186 proofs: real eth_getProof answers, tampering, hand-made bad nodes, hypothesis."""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lightpost.core import rlp
from lightpost.core.hashing import EMPTY_KECCAK, keccak256
from lightpost.core.header import decode_header
from lightpost.core.trie import (
    EMPTY_TRIE_ROOT,
    Account,
    check_eth_get_proof,
    encode_account,
    make_proof,
    storage_key,
    trie_root,
    verify_account_proof,
    verify_proof,
    verify_storage_proof,
)
from lightpost.errors import DecodingError, ProofError
from tests.core.chaindata import anvil_block, hx, io_result, load_json

# --- the real answers ---------------------------------------------------------------------


def _block3() -> tuple[bytes, Any]:
    directory = "proof/execution-apis-block3"
    header = decode_header(hx(io_result(directory, "debug_getRawHeader", "get-block-n.io")))
    answer = io_result(directory, "eth_getProof", "get-account-proof-with-storage.io")
    return header.state_root, answer


def _ropsten(name: str) -> tuple[bytes, Any]:
    answer = load_json("proof", "ethereumjs-ropsten", f"ropsten_{name}.json")
    # The capture has no header: the root is the hash of the first proof node.
    return keccak256(hx(answer["accountProof"][0])), answer


def _anvil(name: str) -> tuple[bytes, Any]:
    data = anvil_block()
    return hx(data["block"]["stateRoot"]), data["proofs_at_block_2"][name]


VECTORS = {
    "block3": _block3,
    "ropsten-contract": lambda: _ropsten("contractWithStorage"),
    "ropsten-eoa": lambda: _ropsten("validAccount"),
    "ropsten-absent": lambda: _ropsten("nonexistentAccount"),
    "anvil-inbox": lambda: _anvil("inbox_account_and_slots"),
    "anvil-eoa": lambda: _anvil("eoa_account"),
    "anvil-absent": lambda: _anvil("absent_account"),
}
ABSENT = {"ropsten-absent", "anvil-absent"}


def test_block3_account_and_absent_slot() -> None:
    state_root, answer = _block3()
    proven = check_eth_get_proof(state_root, answer, address=b"\xaa" + bytes(19))
    assert proven.account == Account(
        nonce=1,
        balance=1,
        storage_root=hx(answer["storageHash"]),
        code_hash=hx(answer["codeHash"]),
    )
    assert dict(proven.storage) == {1: 0}
    storage_proof = [hx(n) for n in answer["storageProof"][0]["proof"]]
    assert verify_storage_proof(hx(answer["storageHash"]), 1, storage_proof) == 0


def test_ropsten_contract_with_present_and_absent_slot() -> None:
    state_root, answer = _ropsten("contractWithStorage")
    proven = check_eth_get_proof(state_root, answer)
    assert proven.exists and proven.account is not None and proven.account.nonce == 1
    present, absent = (int(e["key"], 16) for e in answer["storageProof"])
    assert dict(proven.storage) == {present: 0x1E4EBDD7, absent: 0}


def test_ropsten_eoa_and_nonexistent() -> None:
    state_root, answer = _ropsten("validAccount")
    account = check_eth_get_proof(state_root, answer).account
    assert account is not None and account.balance == 0x8CC8F68890288A3BF6
    assert account.code_hash == EMPTY_KECCAK and account.storage_root == EMPTY_TRIE_ROOT
    state_root, answer = _ropsten("nonexistentAccount")
    assert not check_eth_get_proof(state_root, answer).exists
    proof = [hx(n) for n in answer["accountProof"]]
    assert verify_account_proof(state_root, hx(answer["address"]), proof) is None


def test_anvil_proofs_against_state_root() -> None:
    data = anvil_block()
    state_root = hx(data["block"]["stateRoot"])
    proofs = data["proofs_at_block_2"]
    inbox = check_eth_get_proof(state_root, proofs["inbox_account_and_slots"])
    assert inbox.account is not None and inbox.account.code_hash != EMPTY_KECCAK
    assert inbox.account.storage_root != EMPTY_TRIE_ROOT and len(inbox.storage) == 3
    eoa = check_eth_get_proof(state_root, proofs["eoa_account"])
    assert eoa.account is not None and eoa.account.nonce == 3
    assert not check_eth_get_proof(state_root, proofs["absent_account"]).exists


# --- tampering: every verifier raises ProofError -------------------------------------------


def _flip(node: str, index: int) -> str:
    raw = bytearray(hx(node))
    raw[index % len(raw)] ^= 0x01
    return "0x" + raw.hex()


@pytest.mark.parametrize("name", VECTORS)
def test_flipped_byte_in_any_account_node(name: str) -> None:
    state_root, answer = VECTORS[name]()
    for i, node in enumerate(answer["accountProof"]):
        for position in (0, len(hx(node)) // 2, -1):
            forged = copy.deepcopy(answer)
            forged["accountProof"][i] = _flip(node, position)
            with pytest.raises(ProofError) as info:
                check_eth_get_proof(state_root, forged)
            assert info.value.kind == "account"


@pytest.mark.parametrize("name", VECTORS)
def test_dropped_or_extra_account_node(name: str) -> None:
    state_root, answer = VECTORS[name]()
    nodes = answer["accountProof"]
    variants = [nodes[:i] + nodes[i + 1 :] for i in range(len(nodes))]
    variants += [[*nodes, nodes[-1]], [nodes[0], *nodes], nodes[::-1] if len(nodes) > 1 else []]
    for variant in variants:
        forged = copy.deepcopy(answer)
        forged["accountProof"] = variant
        with pytest.raises(ProofError):
            check_eth_get_proof(state_root, forged)


@pytest.mark.parametrize("name", VECTORS)
@pytest.mark.parametrize("field", ["nonce", "balance", "codeHash", "storageHash"])
def test_swapped_claimed_account_field(name: str, field: str) -> None:
    state_root, answer = VECTORS[name]()
    forged = copy.deepcopy(answer)
    value = forged[field]
    forged[field] = hex(int(value, 16) + 1) if len(value) < 66 else _flip(value, -1)
    with pytest.raises(ProofError):
        check_eth_get_proof(state_root, forged)


@pytest.mark.parametrize("name", VECTORS)
def test_wrong_root_or_address(name: str) -> None:
    state_root, answer = VECTORS[name]()
    with pytest.raises(ProofError):
        check_eth_get_proof(keccak256(state_root), answer)
    with pytest.raises(ProofError):
        check_eth_get_proof(state_root, answer, address=b"\x01" * 20)
    forged = copy.deepcopy(answer)
    forged["address"] = _flip(answer["address"], -1)
    if name in ABSENT:
        # Another address may be absent too; then the proof still proves its absence.
        with contextlib.suppress(ProofError):
            assert not check_eth_get_proof(state_root, forged).exists
    else:
        with pytest.raises(ProofError):
            check_eth_get_proof(state_root, forged)


STORAGE_VECTORS = ["block3", "ropsten-contract", "anvil-inbox"]


@pytest.mark.parametrize("name", STORAGE_VECTORS)
def test_storage_proof_tampering(name: str) -> None:
    state_root, answer = VECTORS[name]()
    for e, entry in enumerate(answer["storageProof"]):
        forged = copy.deepcopy(answer)
        forged["storageProof"][e]["value"] = hex(int(entry["value"], 16) + 1)
        with pytest.raises(ProofError) as info:
            check_eth_get_proof(state_root, forged)
        assert info.value.kind == "storage"
        for i, node in enumerate(entry["proof"]):
            forged = copy.deepcopy(answer)
            forged["storageProof"][e]["proof"][i] = _flip(node, -1)
            with pytest.raises(ProofError):
                check_eth_get_proof(state_root, forged)
            forged["storageProof"][e]["proof"] = entry["proof"][:i] + entry["proof"][i + 1 :]
            with pytest.raises(ProofError):
                check_eth_get_proof(state_root, forged)


def test_absent_account_claimed_non_empty() -> None:
    state_root, answer = _anvil("absent_account")
    forged = copy.deepcopy(answer)
    forged["balance"] = "0x1"
    with pytest.raises(ProofError, match="absent"):
        check_eth_get_proof(state_root, forged)


def test_absent_account_with_claimed_storage() -> None:
    state_root, answer = _anvil("absent_account")
    forged = copy.deepcopy(answer)
    forged["storageProof"] = [{"key": "0x0", "value": "0x5", "proof": []}]
    with pytest.raises(ProofError):
        check_eth_get_proof(state_root, forged)
    forged["storageProof"] = [{"key": "0x0", "value": "0x0", "proof": []}]
    assert dict(check_eth_get_proof(state_root, forged).storage) == {0: 0}


@pytest.mark.parametrize(
    "mutate",
    [
        lambda a: a.pop("accountProof"),
        lambda a: a.update(accountProof="0x00"),
        lambda a: a.update(accountProof=["zz"]),
        lambda a: a.update(address="0x1234"),
        lambda a: a.update(balance=5),
        lambda a: a.update(storageProof=[{"key": "0x1", "value": "0x0"}]),
        lambda a: a.update(storageProof=[{"key": "0x" + "1" * 65, "value": "0x0", "proof": []}]),
        lambda a: a.update(storageProof={}),
    ],
)
def test_malformed_answer_is_a_decoding_error(mutate: Any) -> None:
    state_root, answer = _block3()
    mutate(answer)
    with pytest.raises(DecodingError):
        check_eth_get_proof(state_root, answer)


# --- hand-made nodes: every shape check ---------------------------------------------------

_KEY = bytes([0x12, 0x34])


def _rooted(node: rlp.Item) -> tuple[bytes, list[bytes]]:
    encoded = rlp.encode(node)
    return keccak256(encoded), [encoded]


_LEAF_OK = [b"\x20\x12\x34", b"value"]
_BIG_INLINE = [b"\x20" + b"\x00" * 20, b"v" * 20]  # encodes to >= 32 bytes


@pytest.mark.parametrize(
    ("node", "reason"),
    [
        (b"just a string", "string"),
        ([b"\x20", b"v", b"x"], "3 items"),
        ([b"\x40\x12\x34", b"v"], "flag"),
        ([b"\x21\x23\x4f", b"v"], "padding"),
        ([b"", b"v"], "empty"),
        ([b"\x20\x12\x34", b""], "leaf value"),
        ([b"\x20\x12\x34", [b"v"]], "leaf value"),
        ([b"\x00", b"\x01" * 32], "empty path"),
        ([b"\x00\x12", b""], "without a child"),
        ([b"\x00\x12", b"\x01" * 5], "reference of 5"),
        ([b"\x00\x12", _BIG_INLINE], "must be hashed"),
        ([[b""]] * 17, "1 items"),
        ([b""] * 16 + [[b"x"]], "is a list"),
    ],
)
def test_malformed_nodes_raise_proof_error(node: rlp.Item, reason: str) -> None:
    root, proof = _rooted(node)
    key = _KEY if reason != "is a list" else b""
    with pytest.raises(ProofError, match=reason):
        verify_proof(root, key, proof)


def test_hashed_node_below_32_bytes_is_rejected() -> None:
    small = rlp.encode([b"\x34", b"v"])
    root, proof = _rooted([b"\x00\x12", keccak256(small)])
    with pytest.raises(ProofError, match="shorter than 32"):
        verify_proof(root, _KEY, [*proof, small])


def test_valid_absence_shapes() -> None:
    # Leaf for another key, diverging extension, empty branch slot, empty trie.
    root, proof = _rooted([b"\x20\x12\x35", b"v"])
    assert verify_proof(root, _KEY, proof) is None
    root, proof = _rooted([b"\x00\x13", b"\x01" * 32])
    assert verify_proof(root, _KEY, proof) is None
    root, proof = _rooted([b""] * 16 + [b"root value"])
    assert verify_proof(root, _KEY, proof) is None
    assert verify_proof(root, b"", proof) == b"root value"
    assert verify_proof(EMPTY_TRIE_ROOT, _KEY, []) is None
    assert verify_proof(EMPTY_TRIE_ROOT, _KEY, [rlp.encode(b"")]) is None
    root, proof = _rooted(_LEAF_OK)
    assert verify_proof(root, _KEY, proof) == b"value"


def test_proof_api_errors() -> None:
    with pytest.raises(ProofError):
        verify_proof(b"\x00" * 31, _KEY, [])
    with pytest.raises(ProofError, match="missing"):
        verify_proof(keccak256(b"x"), _KEY, [])
    with pytest.raises(ProofError):
        verify_account_proof(EMPTY_TRIE_ROOT, b"\x00" * 19, [])
    with pytest.raises(ProofError):
        storage_key(2**256)
    with pytest.raises(ProofError, match="not valid RLP"):
        verify_proof(keccak256(b"\xc3\x80"), _KEY, [b"\xc3\x80"])


def test_proven_value_must_decode() -> None:
    address = b"\x07" * 20
    items = {keccak256(address): b"not an account"}
    with pytest.raises(ProofError, match="not an account"):
        verify_account_proof(trie_root(items), address, make_proof(items, keccak256(address)))
    slots = {storage_key(1): rlp.encode(b"\x00\x01")}
    with pytest.raises(ProofError, match="storage word"):
        verify_storage_proof(trie_root(slots), 1, make_proof(slots, storage_key(1)))


# --- a fake endpoint: answers built with make_proof ----------------------------------------


def _fake_eth_get_proof(
    accounts: dict[bytes, tuple[Account, dict[int, int]]], address: bytes, slots: list[int]
) -> tuple[bytes, dict[str, Any]]:
    state = {keccak256(a): encode_account(acc) for a, (acc, _) in accounts.items()}
    acc, storage = accounts.get(
        address,
        (Account(nonce=0, balance=0, storage_root=EMPTY_TRIE_ROOT, code_hash=EMPTY_KECCAK), {}),
    )
    slot_items = {storage_key(s): rlp.encode(v) for s, v in storage.items() if v}
    answer = {
        "address": "0x" + address.hex(),
        "nonce": hex(acc.nonce),
        "balance": hex(acc.balance),
        "codeHash": "0x" + acc.code_hash.hex(),
        "storageHash": "0x" + acc.storage_root.hex(),
        "accountProof": ["0x" + n.hex() for n in make_proof(state, keccak256(address))],
        "storageProof": [
            {
                "key": hex(s),
                "value": hex(storage.get(s, 0)),
                "proof": ["0x" + n.hex() for n in make_proof(slot_items, storage_key(s))],
            }
            for s in slots
        ],
    }
    return trie_root(state), answer


_storage = st.dictionaries(st.integers(0, 2**256 - 1), st.integers(0, 2**256 - 1), max_size=6)


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.binary(min_size=20, max_size=20),
        st.tuples(st.integers(0, 2**64), st.integers(0, 2**128), _storage),
        min_size=1,
        max_size=8,
    ),
    st.binary(min_size=20, max_size=20),
    st.lists(st.integers(0, 2**256 - 1), max_size=3),
)
def test_fake_endpoint_answers_verify(
    raw: dict[bytes, tuple[int, int, dict[int, int]]], stranger: bytes, extra_slots: list[int]
) -> None:
    accounts: dict[bytes, tuple[Account, dict[int, int]]] = {}
    for address, (nonce, balance, storage) in raw.items():
        storage_root = trie_root({storage_key(s): rlp.encode(v) for s, v in storage.items() if v})
        accounts[address] = (
            Account(
                nonce=nonce, balance=balance, storage_root=storage_root, code_hash=EMPTY_KECCAK
            ),
            storage,
        )
    for address in [*accounts, stranger]:
        storage = accounts.get(address, (None, {}))[1]
        slots = [*storage, *extra_slots]
        state_root, answer = _fake_eth_get_proof(accounts, address, slots)
        proven = check_eth_get_proof(state_root, answer, address=address)
        assert proven.exists == (address in accounts)
        assert dict(proven.storage) == {s: storage.get(s, 0) for s in slots}


# --- hypothesis on the generic trie --------------------------------------------------------

_maps = st.dictionaries(st.binary(max_size=5), st.binary(min_size=1, max_size=40), max_size=30)


@settings(max_examples=200, deadline=None)
@given(_maps, st.lists(st.binary(max_size=5), max_size=5))
def test_make_proof_round_trip(items: dict[bytes, bytes], probes: list[bytes]) -> None:
    root = trie_root(items)
    for key in [*items, *probes]:
        proof = make_proof(items, key)
        assert verify_proof(root, key, proof) == items.get(key)


@settings(max_examples=150, deadline=None)
@given(_maps.filter(lambda m: len(m) >= 2), st.data())
def test_tampered_generated_proofs_fail(items: dict[bytes, bytes], data: st.DataObject) -> None:
    root = trie_root(items)
    key = data.draw(st.sampled_from(sorted(items)))
    proof = make_proof(items, key)
    i = data.draw(st.integers(0, len(proof) - 1))
    j = data.draw(st.integers(0, len(proof[i]) - 1))
    flipped = bytearray(proof[i])
    flipped[j] ^= data.draw(st.integers(1, 255))
    with pytest.raises(ProofError):
        verify_proof(root, key, [*proof[:i], bytes(flipped), *proof[i + 1 :]])
    with pytest.raises(ProofError):
        verify_proof(root, key, proof[:i] + proof[i + 1 :])
    with pytest.raises(ProofError):
        verify_proof(root, key, [*proof, proof[-1]])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.binary(max_size=120), min_size=1, max_size=4), st.binary(max_size=8), st.booleans()
)
def test_random_proof_nodes_raise_only_proof_errors(
    nodes: list[bytes], key: bytes, rooted: bool
) -> None:
    # With rooted=True the first node's hash is the root, so the decoder paths are reached.
    root = keccak256(nodes[0]) if rooted else keccak256(b"root")
    with contextlib.suppress(ProofError, DecodingError):
        verify_proof(root, key, nodes)


_node_items = st.recursive(
    st.binary(max_size=40),
    lambda inner: st.lists(inner, min_size=0, max_size=17),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_node_items, min_size=1, max_size=3), st.binary(max_size=4))
def test_random_rlp_nodes_raise_only_proof_errors(items: list[rlp.Item], key: bytes) -> None:
    nodes = [rlp.encode(i) for i in items]
    with contextlib.suppress(ProofError):
        verify_proof(keccak256(nodes[0]), key, nodes)
