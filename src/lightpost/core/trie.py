"""Merkle Patricia Trie roots and EIP-1186 proof verification.

Spec: Yellow Paper appendix C (hex-prefix) and D (the trie): a node is an RLP leaf
``[hp(path, True), value]``, extension ``[hp(path, False), child]`` or 16-child branch
plus value; a child encoding under 32 bytes is inlined, else referenced by keccak256.
The trie is built whole from the final key/value set (order cannot matter); an empty
value means absent (go-ethereum ``trie.Update``). :func:`verify_proof` consumes the
EIP-1186 node list root first, strictly in order, nothing extra; absence ends at an empty
branch slot, another key's leaf or a diverging extension. Any inconsistency raises
:class:`lightpost.errors.ProofError`: an RPC answer's values are never believed unproven."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from lightpost.core import rlp
from lightpost.core.hashing import EMPTY_KECCAK, keccak256
from lightpost.core.rpcfields import (
    data_field,
    get_field,
    get_list,
    get_object,
    parse_data,
    parse_quantity,
    quantity_field,
)
from lightpost.errors import DecodingError, ProofError

__all__ = [
    "ABSENT_CODE_HASHES",
    "ABSENT_STORAGE_HASHES",
    "EMPTY_TRIE_ROOT",
    "Account",
    "ProvenAccount",
    "check_eth_get_proof",
    "decode_account",
    "encode_account",
    "make_proof",
    "ordered_trie_root",
    "secure_trie_root",
    "storage_key",
    "trie_root",
    "verify_account_proof",
    "verify_proof",
    "verify_storage_proof",
]

EMPTY_TRIE_ROOT = keccak256(rlp.encode(b""))
"""Root of the empty trie, keccak256(rlp(b"")) = 56e81f...b421 (Yellow Paper appendix D)."""

HASH_BYTES = 32
"""Length of a keccak256 node reference; shorter node encodings are inlined (YP app. D)."""

BRANCH_WIDTH = 17
"""A branch node has 16 children (one per nibble) plus a value slot (YP appendix D)."""

BRANCH_VALUE = 16
"""Index of the value slot in a branch node."""

ADDRESS_BYTES = 20
"""Length of an account address (Yellow Paper section 4.1)."""

STORAGE_SLOT_LIMIT = 2**256
"""Storage slots and values are 256-bit words (Yellow Paper section 9.1)."""

_HP_LEAF = 2
"""Hex-prefix flag bit set for leaf nodes (Yellow Paper appendix C)."""

_HP_ODD = 1
"""Hex-prefix flag bit set when the path has an odd number of nibbles."""

_NIBBLE_OF_HEX = bytes.maketrans(b"0123456789abcdef", bytes(range(16)))
"""Maps the ASCII hex digits of ``bytes.hex()`` to nibble values 0..15."""


# --- hex-prefix encoding (Yellow Paper appendix C) ---


def _nibbles(key: bytes) -> bytes:
    # Split ``key`` into its nibbles, high nibble first (one nibble per byte).
    return key.hex().encode("ascii").translate(_NIBBLE_OF_HEX)


def _hp_encode(path: bytes, *, leaf: bool) -> bytes:
    flag = (_HP_LEAF if leaf else 0) | (len(path) % 2)
    # An even path gets a zero padding nibble so the result packs into whole bytes.
    nib = bytes([flag]) + path if len(path) % 2 else bytes([flag, 0]) + path
    return bytes((nib[i] << 4) | nib[i + 1] for i in range(0, len(nib), 2))


def _hp_decode(encoded: bytes, kind: str) -> tuple[bytes, bool]:
    # Decode a hex-prefixed path into (nibbles, is_leaf); reject malformed prefixes.
    if not encoded:
        raise ProofError(kind, "node path is empty (no hex-prefix byte)")
    nib = _nibbles(encoded)
    flag = nib[0]
    if flag > (_HP_LEAF | _HP_ODD):
        raise ProofError(kind, f"invalid hex-prefix flag {flag}")
    if flag & _HP_ODD:
        return nib[1:], bool(flag & _HP_LEAF)
    if nib[1] != 0:
        raise ProofError(kind, "even hex-prefix path with a non-zero padding nibble")
    return nib[2:], bool(flag & _HP_LEAF)


# --- building ---


def _common_prefix_length(a: bytes, b: bytes) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _reference(node: rlp.Item, db: dict[bytes, bytes] | None) -> rlp.Item:
    # The way a parent refers to ``node``: inline if its RLP is < 32 bytes, else its hash.
    encoded = rlp.encode(node)
    if len(encoded) < HASH_BYTES:
        return node
    digest = keccak256(encoded)
    if db is not None:
        db[digest] = encoded
    return digest


def _build(
    pairs: Sequence[tuple[bytes, bytes]], depth: int, db: dict[bytes, bytes] | None
) -> rlp.Item:
    # Node for ``pairs`` (sorted by nibble path, unique, non-empty values) below ``depth``.
    if not pairs:
        return b""
    if len(pairs) == 1:
        path, value = pairs[0]
        return [_hp_encode(path[depth:], leaf=True), value]
    # Sorted order: the common prefix of first and last is common to all keys.
    first, last = pairs[0][0], pairs[-1][0]
    shared = _common_prefix_length(first[depth:], last[depth:])
    if shared:
        child = _build(pairs, depth + shared, db)
        return [_hp_encode(first[depth : depth + shared], leaf=False), _reference(child, db)]
    branch: list[rlp.Item] = [b""] * BRANCH_WIDTH
    start = 0
    if len(first) == depth:  # a key ending here sorts first and lives in the value slot
        branch[BRANCH_VALUE] = pairs[0][1]
        start = 1
    i = start
    while i < len(pairs):
        nibble = pairs[i][0][depth]
        j = i
        while j < len(pairs) and pairs[j][0][depth] == nibble:
            j += 1
        branch[nibble] = _reference(_build(pairs[i:j], depth + 1, db), db)
        i = j
    return branch


def _root_node(items: Mapping[bytes, bytes], db: dict[bytes, bytes] | None) -> bytes:
    pairs = sorted((_nibbles(bytes(k)), bytes(v)) for k, v in items.items() if v)
    encoded = rlp.encode(_build(pairs, 0, db))
    root = keccak256(encoded)
    if db is not None:
        db[root] = encoded
    return root


def trie_root(items: Mapping[bytes, bytes]) -> bytes:
    """Root hash of the trie holding ``items`` (empty values count as absent)."""
    return _root_node(items, None)


def secure_trie_root(items: Mapping[bytes, bytes]) -> bytes:
    """Root of the "secure" trie: every key replaced by keccak256(key) (state, storage)."""
    return trie_root({keccak256(k): v for k, v in items.items()})


def ordered_trie_root(values: Sequence[bytes]) -> bytes:
    """Root of the trie rlp(i) -> values[i]: a block's transactions, receipts, withdrawals (Yellow
    Paper 4.3; EIP-2718 items as ``type || payload``)."""
    return trie_root({rlp.encode(i): v for i, v in enumerate(values)})


# --- walking (shared by proof generation and verification) ---


def _as_node(encoded: bytes, kind: str) -> rlp.Item:
    try:
        return rlp.decode(encoded)
    except DecodingError as exc:
        raise ProofError(kind, f"proof node is not valid RLP: {exc.reason}") from None


def _hashed_node(encoded: bytes, digest: bytes, root: bytes, kind: str) -> rlp.Item:
    # The node ``encoded``, referenced by ``digest`` (its hash, checked by the caller).
    if digest != root and len(encoded) < HASH_BYTES:
        raise ProofError(kind, "node shorter than 32 bytes referenced by hash")
    return _as_node(encoded, kind)


def _walk(root: bytes, key: bytes, fetch: Callable[[bytes], rlp.Item], kind: str) -> bytes | None:
    # Follow ``key`` from ``root`` (``fetch(hash)``: a hashed node, decoded); the value, or None
    # when the nodes prove it absent.
    path = _nibbles(key)
    pos = 0
    ref: rlp.Item = root
    while True:
        # Resolve the reference into a node.
        if isinstance(ref, list):
            node: rlp.Item = ref
            if len(rlp.encode(node)) >= HASH_BYTES:
                raise ProofError(kind, "inline node of 32 bytes or more must be hashed")
        elif ref == b"":
            return None  # empty branch slot or empty trie
        elif len(ref) == HASH_BYTES:
            node = fetch(ref)
        else:
            raise ProofError(kind, f"node reference of {len(ref)} bytes")

        if node == b"":
            return None  # the empty trie: rlp(b"") hashes to EMPTY_TRIE_ROOT
        if not isinstance(node, list):
            raise ProofError(kind, "node is a string, not a list")
        if len(node) == BRANCH_WIDTH:
            if pos == len(path):
                value = node[BRANCH_VALUE]
                if not isinstance(value, bytes):
                    raise ProofError(kind, "branch value is a list")
                return value or None
            ref = node[path[pos]]
            pos += 1
            continue
        if len(node) != 2:
            raise ProofError(kind, f"node has {len(node)} items (expected 2 or 17)")
        encoded_path, child = node
        if not isinstance(encoded_path, bytes):
            raise ProofError(kind, "node path is a list")
        segment, is_leaf = _hp_decode(encoded_path, kind)
        if is_leaf:
            if path[pos:] != segment:
                return None  # a leaf for another key: the key is absent
            if not isinstance(child, bytes) or not child:
                raise ProofError(kind, "leaf value is empty or a list")
            return child
        if not segment:
            raise ProofError(kind, "extension node with an empty path")
        if path[pos : pos + len(segment)] != segment:
            return None  # the path diverges inside an extension: absent
        if child == b"":
            raise ProofError(kind, "extension node without a child")
        pos += len(segment)
        ref = child


Known = dict[bytes, tuple[bytes, rlp.Item]]
"""Nodes verified in one trie: hash -> (encoding, node). Proofs of many keys share upper nodes
(20,000 storage keys: ~105,000 nodes, ~40,000 distinct): each is hashed and decoded once."""


def verify_proof(
    root: bytes,
    key: bytes,
    proof: Sequence[bytes],
    *,
    kind: str = "trie",
    known: Known | None = None,
) -> bytes | None:
    """Verify an EIP-1186 proof of ``key`` under ``root``: the value, or None for a proof of
    absence. :class:`ProofError` (``kind``) on a hash mismatch, a malformed, missing or left-over
    node. ``known`` (:data:`Known`, updated): a node equal to a known one is not hashed again;
    every node is still checked."""
    if len(root) != HASH_BYTES:
        raise ProofError(kind, f"root must be 32 bytes, got {len(root)}")
    if not proof and root == EMPTY_TRIE_ROOT:
        return None  # geth answers [] for keys of an empty trie
    consumed = 0

    def fetch(digest: bytes) -> rlp.Item:
        nonlocal consumed
        if consumed >= len(proof):
            raise ProofError(kind, f"proof ends after {consumed} nodes; a node is missing")
        encoded = proof[consumed]
        if not isinstance(encoded, bytes | bytearray):
            raise ProofError(kind, f"proof node {consumed} is not bytes")
        hit = known.get(digest) if known is not None else None
        if hit is not None and hit[0] == encoded:
            if digest != root and len(encoded) < HASH_BYTES:  # as _hashed_node checks
                raise ProofError(kind, "node shorter than 32 bytes referenced by hash")
            node = hit[1]
        else:
            encoded = bytes(encoded)
            if keccak256(encoded) != digest:
                raise ProofError(kind, f"proof node {consumed} does not match its hash")
            node = _hashed_node(encoded, digest, root, kind)
            if known is not None:
                known[digest] = (encoded, node)
        consumed += 1
        return node

    value = _walk(root, key, fetch, kind)
    if consumed != len(proof):
        raise ProofError(kind, f"{len(proof) - consumed} unused nodes after the proof's end")
    return value


def make_proof(items: Mapping[bytes, bytes], key: bytes) -> list[bytes]:
    """The EIP-1186 proof of ``key`` (present or absent) in the trie of ``items`` (for tests and
    fake endpoints)."""
    db: dict[bytes, bytes] = {}
    root = _root_node(items, db)
    nodes: list[bytes] = []

    def fetch(digest: bytes) -> rlp.Item:
        nodes.append(db[digest])
        return _hashed_node(db[digest], digest, root, "trie")

    if root != EMPTY_TRIE_ROOT:
        _walk(root, key, fetch, "trie")
    return nodes


# --- accounts and storage (EIP-1186) ---


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    """A state-trie account: rlp([nonce, balance, storageRoot, codeHash]) (YP 4.1)."""

    nonce: int
    balance: int
    storage_root: bytes
    code_hash: bytes

    def __post_init__(self) -> None:
        if self.nonce < 0 or self.balance < 0:
            raise DecodingError("account", "nonce and balance must be non-negative")
        if len(self.storage_root) != HASH_BYTES or len(self.code_hash) != HASH_BYTES:
            raise DecodingError("account", "storage root and code hash must be 32 bytes")


def encode_account(account: Account) -> bytes:
    """The RLP an account is stored as in the state trie."""
    return rlp.encode([account.nonce, account.balance, account.storage_root, account.code_hash])


def decode_account(encoded: bytes) -> Account:
    """Decode a state-trie account value; raises :class:`DecodingError`."""
    item = rlp.decode(encoded)
    if not isinstance(item, list) or len(item) != 4:
        raise DecodingError("account", "expected an RLP list of 4 items")
    nonce, balance, storage_root, code_hash = item
    if not isinstance(storage_root, bytes) or not isinstance(code_hash, bytes):
        raise DecodingError("account", "storage root and code hash must be strings")
    if not isinstance(nonce, bytes) or not isinstance(balance, bytes):
        raise DecodingError("account", "nonce and balance must be strings")
    return Account(
        nonce=rlp.decode_int(nonce, what="nonce"),
        balance=rlp.decode_int(balance, what="balance"),
        storage_root=storage_root,
        code_hash=code_hash,
    )


def storage_key(slot: int) -> bytes:
    """Storage-trie key of ``slot``: keccak256 of the slot as a 32-byte word (EIP-1186)."""
    if not 0 <= slot < STORAGE_SLOT_LIMIT:
        raise ProofError("storage", "slot outside 0 .. 2**256-1")
    return keccak256(slot.to_bytes(HASH_BYTES, "big"))


def verify_account_proof(
    state_root: bytes, address: bytes, account_proof: Sequence[bytes]
) -> Account | None:
    """Prove the account at ``address`` (key keccak256(address)); ``None`` if absent."""
    if len(address) != ADDRESS_BYTES:
        raise ProofError("account", f"address must be 20 bytes, got {len(address)}")
    value = verify_proof(state_root, keccak256(address), account_proof, kind="account")
    if value is None:
        return None
    try:
        return decode_account(value)
    except DecodingError as exc:
        raise ProofError("account", f"proven value is not an account: {exc}") from None


def verify_storage_proof(
    storage_root: bytes, slot: int, storage_proof: Sequence[bytes], known: Known | None = None
) -> int:
    """Prove storage ``slot`` under ``storage_root`` (absent: 0); ``known`` as in
    :func:`verify_proof`."""
    value = verify_proof(
        storage_root, storage_key(slot), storage_proof, kind="storage", known=known
    )
    if value is None:
        return 0
    try:
        word = rlp.decode(value)
        if not isinstance(word, bytes) or not word or len(word) > HASH_BYTES:
            raise DecodingError("storage", "expected a non-zero word of at most 32 bytes")
        return rlp.decode_int(word, what="storage value")
    except DecodingError as exc:
        raise ProofError("storage", f"proven value is not a storage word: {exc}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class ProvenAccount:
    """An ``eth_getProof`` answer verified against ``state_root``: ``account`` None when proven
    absent; ``storage``: slot -> proven value (0 when absent)."""

    state_root: bytes
    address: bytes
    account: Account | None
    storage: Mapping[int, int] = field(default_factory=dict)

    @property
    def exists(self) -> bool:
        """True when the account is present in the state trie."""
        return self.account is not None


_WHAT = "eth_getProof"
"""Structure name used in decoding errors for eth_getProof answers."""

ABSENT_CODE_HASHES = frozenset({EMPTY_KECCAK, bytes(HASH_BYTES)})
"""Code hashes an RPC may claim for an absent account: empty-code (geth) or zeros (older)."""

ABSENT_STORAGE_HASHES = frozenset({EMPTY_TRIE_ROOT, bytes(HASH_BYTES)})
"""Storage hashes an RPC may claim for an absent account: the empty-trie root or zeros."""


def _proof_nodes(value: object, what: str) -> list[bytes]:
    return [parse_data(node, f"{what}[{i}]") for i, node in enumerate(get_list(value, what))]


def check_eth_get_proof(
    state_root: bytes, rpc_obj: object, *, address: bytes | None = None
) -> ProvenAccount:
    """Verify an ``eth_getProof`` answer (EIP-1186) against ``state_root``: every claimed account
    field equals the proven one (an absent account claimed empty), every ``storageProof`` value
    equals the proven one, and the answer is about ``address`` if given. Malformed JSON:
    :class:`DecodingError`; anything unproven: :class:`ProofError`."""
    obj = get_object(rpc_obj, _WHAT)
    claimed_address = data_field(obj, "address", _WHAT, ADDRESS_BYTES)
    if address is not None and claimed_address != address:
        raise ProofError("account", "answer is about another address than the one asked")
    nonce = quantity_field(obj, "nonce", _WHAT)
    balance = quantity_field(obj, "balance", _WHAT)
    code_hash = data_field(obj, "codeHash", _WHAT, HASH_BYTES)
    storage_hash = data_field(obj, "storageHash", _WHAT, HASH_BYTES)
    account_proof = _proof_nodes(get_field(obj, "accountProof", _WHAT), f"{_WHAT}.accountProof")

    account = verify_account_proof(state_root, claimed_address, account_proof)
    if account is None:
        if (
            nonce
            or balance
            or code_hash not in ABSENT_CODE_HASHES
            or storage_hash not in ABSENT_STORAGE_HASHES
        ):
            raise ProofError("account", "account is proven absent but claimed non-empty")
        storage_root = EMPTY_TRIE_ROOT
    else:
        claimed = Account(
            nonce=nonce, balance=balance, storage_root=storage_hash, code_hash=code_hash
        )
        for name in ("nonce", "balance", "storage_root", "code_hash"):
            if getattr(claimed, name) != getattr(account, name):
                raise ProofError("account", f"claimed {name} differs from the proven one")
        storage_root = account.storage_root

    storage: dict[int, int] = {}
    known: Known = {}
    entries = get_list(obj.get("storageProof", []), f"{_WHAT}.storageProof")
    for i, raw_entry in enumerate(entries):
        what = f"{_WHAT}.storageProof[{i}]"
        entry = get_object(raw_entry, what)
        slot = parse_quantity(get_field(entry, "key", what), f"{what}.key")
        if slot >= STORAGE_SLOT_LIMIT:
            raise DecodingError(what, "storage key wider than 32 bytes")
        claimed_value = quantity_field(entry, "value", what)
        proven = verify_storage_proof(
            storage_root,
            slot,
            _proof_nodes(get_field(entry, "proof", what), f"{what}.proof"),
            known,
        )
        if claimed_value != proven:
            raise ProofError(
                "storage", f"claimed value of slot {slot:#x} differs from the proven one"
            )
        storage[slot] = proven
    return ProvenAccount(
        state_root=state_root,
        address=claimed_address,
        account=account,
        storage=MappingProxyType(storage),
    )
