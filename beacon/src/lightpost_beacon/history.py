"""Block hashes proven from state: EIP-2935's block-hash history contract (Prague). Pure.

The state after block H holds, in the history contract's storage, the hashes of blocks H - 8191
to H - 1, block N's at slot N % 8191 (EIP-2935, "Block processing" and ``set``: at the start of
block B the system call stores B's parent hash at (B - 1) % HISTORY_SERVE_WINDOW). So ONE
eth_getProof of that slot against a proven state root proves the hash of any block in H's
window; a block deeper than that is reached by hops -- prove a block M in the window, its
header (which must hash to the proven hash) gives M's state root, and M's state proves the
next window (an archive node serves old state; a full node does not, and the anchor then walks
parent hashes instead, lightpost_beacon.anchor).

What the proof rests on: the state root of a block whose hash is already proven (a header the
sync committee signed, or one reached from it), the account at HISTORY_STORAGE_ADDRESS holding
exactly the EIP's bytecode (its code hash), and the storage proof of the slot. A proven empty
slot or a missing contract says the chain does not serve that hash (before Prague, or a chain
without EIP-2935): no endpoint is blamed for that, the anchor walks instead.
"""

from __future__ import annotations

from typing import Any, Final

from lightpost.core.trie import check_eth_get_proof
from lightpost.errors import ProofError

__all__ = [
    "HISTORY_SERVE_WINDOW",
    "HISTORY_STORAGE_ADDRESS",
    "HISTORY_STORAGE_CODE_HASH",
    "MAX_HISTORY_HOPS",
    "WALK_PREFERRED",
    "history_params",
    "history_slot",
    "hop_plan",
    "in_window",
    "verify_history_proof",
]

HISTORY_SERVE_WINDOW: Final = 8191
"""Block hashes the history contract keeps (EIP-2935 parameters; 8192 before EIPs PR 9144)."""
HISTORY_STORAGE_ADDRESS: Final = bytes.fromhex("0000f90827f1c53a10cb7a02335b175320002935")
"""The history contract's address (EIP-2935 parameters, "Deployment")."""
HISTORY_STORAGE_CODE_HASH: Final = bytes.fromhex(
    "6e49e66782037c0555897870e29fa5e552daf4719552131a0abce779daec0a5d"
)
"""keccak256 of the EIP's runtime bytecode (EIP-2935 "Bytecode"; anvil 1.7.1 serves the same)."""
WALK_PREFERRED: Final = 8
"""A gap to a proven hash of at most this many blocks is walked: 8 headers (~5 KB of JSON) cost
about what one history proof does (~9 KB of hex on mainnet, adapters.rpc's proof note)."""
MAX_HISTORY_HOPS: Final = 128
"""History proofs chained for one block at most: 128 x 8,191 blocks = ~145 days of mainnet blocks
below a proven header, each hop one eth_getProof and one header (an archive node's old state)."""


def history_slot(number: int) -> int:
    """The history contract's storage slot holding block ``number``'s hash (EIP-2935 ``set``)."""
    if number < 0:
        raise ProofError("history", f"no block {number}")
    return number % HISTORY_SERVE_WINDOW


def in_window(state_block: int, number: int) -> bool:
    """Whether the state after ``state_block`` holds block ``number``'s hash: state_block - 8191
    <= number <= state_block - 1 (EIP-2935 ``get``'s range, for the next block's call)."""
    return 1 <= state_block - number <= HISTORY_SERVE_WINDOW


def hop_plan(state_block: int, number: int) -> tuple[tuple[int, int], ...]:
    """(state block, block proven from its state) in turn, from ``state_block`` (whose state root
    is proven) down to ``number``: every hop but the last lands a full window lower, so each step
    is in its state block's window. ProofError: deeper than MAX_HISTORY_HOPS windows."""
    if number >= state_block or number < 0:
        raise ProofError("history", f"block {number} is not below block {state_block}")
    hops = -(-(state_block - number) // HISTORY_SERVE_WINDOW)  # ceil
    if hops > MAX_HISTORY_HOPS:
        raise ProofError(
            "history",
            f"block {number} is more than {MAX_HISTORY_HOPS} x {HISTORY_SERVE_WINDOW} blocks "
            f"below a proven state",
        )
    steps = [
        (state_block - k * HISTORY_SERVE_WINDOW, state_block - (k + 1) * HISTORY_SERVE_WINDOW)
        for k in range(hops - 1)
    ]
    last = state_block - (hops - 1) * HISTORY_SERVE_WINDOW
    return (*steps, (last, number))


def history_params(state_block: int, number: int) -> list[Any]:
    """The eth_getProof request for block ``number``'s slot at ``state_block`` (EIP-1186; the
    slot as a 32-byte word, as every node accepts)."""
    return [
        "0x" + HISTORY_STORAGE_ADDRESS.hex(),
        [f"0x{history_slot(number):064x}"],
        hex(state_block),
    ]


def verify_history_proof(state_root: bytes, answer: object, number: int) -> bytes | None:
    """Block ``number``'s hash from an eth_getProof answer (:func:`history_params`) verified
    against ``state_root``: the account proof, the contract's code hash, the slot's storage
    proof. None: proven not served (no history contract there, or the slot is empty). Anything
    unproven or malformed: ProofError / DecodingError (the answering endpoint's fault)."""
    proven = check_eth_get_proof(state_root, answer, address=HISTORY_STORAGE_ADDRESS)
    if proven.account is None or proven.account.code_hash != HISTORY_STORAGE_CODE_HASH:
        return None
    slot = history_slot(number)
    if slot not in proven.storage:
        raise ProofError("history", f"the proof lacks slot {slot} (block {number})")
    value = proven.storage[slot]
    return value.to_bytes(32, "big") if value else None
