"""A generated beacon chain for the devnet and tests: given execution payload headers (e.g. anvil's
blocks), it builds beacon block headers that commit to them, fabricated states that commit to
the sync committees and the finalized checkpoint at Electra's generalized indices, and the
light-client data a beacon node serves (bootstrap, updates, finality and optimistic updates, in
the beacon API's JSON form), signed by a generated committee per period.

Only the leaves the light client proves are filled (zero elsewhere): what it checks is the real
spec path (lightpost_beacon.lightclient), with no shortcut. Keys are derived from a public seed:
test keys, never for value. Needs the lightpost[beacon] extra (py-arkworks-bls12381).
"""

from __future__ import annotations

from dataclasses import dataclass
from hashlib import sha256
from typing import Any, Final

from lightpost_beacon.anchor import devnet_config
from lightpost_beacon.bls import DST
from lightpost_beacon.containers import (
    BeaconBlockHeader,
    ChainConfig,
    ExecutionPayloadHeader,
    LightClientHeader,
    SyncCommittee,
    committee_to_json,
    header_to_json,
)
from lightpost_beacon.lightclient import (
    CURRENT_SYNC_COMMITTEE_GINDEX_ELECTRA,
    EXECUTION_PAYLOAD_GINDEX,
    FINALIZED_ROOT_GINDEX_ELECTRA,
    NEXT_SYNC_COMMITTEE_GINDEX_ELECTRA,
    signing_root,
)
from lightpost_beacon.ssz import (
    ZERO_CHUNK,
    bytes_root,
    floorlog2,
    hash_pair,
    merkleize,
    mix_in_length,
    uint64_root,
)

__all__ = ["Block", "GeneratedChain", "devnet_config", "execution_header", "merkle_branch"]

CURVE_ORDER: Final = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001
"""r, the order of BLS12-381's G1 and G2 (secret keys are taken mod r)."""
FORK: Final = "fulu"
"""The fork served (Fulu's light-client containers are Electra's)."""


MAX_BYTES_PER_TRANSACTION: Final = 2**30
MAX_TRANSACTIONS_PER_PAYLOAD: Final = 2**20
MAX_WITHDRAWALS_PER_PAYLOAD: Final = 16
"""Bellatrix/Capella beacon-chain.md presets: the SSZ list limits of the payload's two roots."""


def execution_header(
    block: dict[str, Any], raw_transactions: list[bytes]
) -> ExecutionPayloadHeader:
    """The ExecutionPayloadHeader of an execution block (eth_getBlockByNumber JSON, hashes only)
    and its raw transactions (eth_getRawTransactionByHash, in order): every field is the block's
    except the two SSZ roots, computed here (transactions; withdrawals, as Capella's
    Withdrawal containers)."""

    def num(key: str) -> int:
        return int(block[key], 16)

    def raw(key: str) -> bytes:
        return bytes.fromhex(block[key][2:])

    tx_roots = [bytes_root(tx, MAX_BYTES_PER_TRANSACTION) for tx in raw_transactions]
    transactions_root = mix_in_length(
        merkleize(tx_roots, MAX_TRANSACTIONS_PER_PAYLOAD), len(tx_roots)
    )
    withdrawals = [
        merkleize(
            [
                uint64_root(int(w["index"], 16)),
                uint64_root(int(w["validatorIndex"], 16)),
                bytes_root(bytes.fromhex(w["address"][2:])),
                uint64_root(int(w["amount"], 16)),
            ]
        )
        for w in block.get("withdrawals") or []
    ]
    withdrawals_root = mix_in_length(
        merkleize(withdrawals, MAX_WITHDRAWALS_PER_PAYLOAD), len(withdrawals)
    )
    return ExecutionPayloadHeader(
        parent_hash=raw("parentHash"),
        fee_recipient=raw("miner"),
        state_root=raw("stateRoot"),
        receipts_root=raw("receiptsRoot"),
        logs_bloom=raw("logsBloom"),
        prev_randao=raw("mixHash"),
        block_number=num("number"),
        gas_limit=num("gasLimit"),
        gas_used=num("gasUsed"),
        timestamp=num("timestamp"),
        extra_data=raw("extraData"),
        base_fee_per_gas=num("baseFeePerGas"),
        block_hash=raw("hash"),
        transactions_root=transactions_root,
        withdrawals_root=withdrawals_root,
        blob_gas_used=num("blobGasUsed"),
        excess_blob_gas=num("excessBlobGas"),
    )


def merkle_branch(leaves: list[bytes], index: int) -> tuple[bytes, tuple[bytes, ...]]:
    """(root, branch of ``leaves[index]``) of the tree over ``leaves`` (a power of two)."""
    layer = list(leaves)
    branch = []
    while len(layer) > 1:
        branch.append(layer[index ^ 1])
        layer = [hash_pair(layer[i], layer[i + 1]) for i in range(0, len(layer), 2)]
        index //= 2
    return layer[0], tuple(branch)


def _subtree(gindex: int) -> tuple[int, int]:
    depth = floorlog2(gindex)
    return depth, gindex - (1 << depth)


@dataclass(frozen=True, kw_only=True)
class Block:
    """A generated block: its light-client header and the branches its state proves."""

    header: LightClientHeader
    current_branch: tuple[bytes, ...]
    next_branch: tuple[bytes, ...]
    finality_branch: tuple[bytes, ...]
    finalized: LightClientHeader | None


class GeneratedChain:
    """Blocks on top of each other, a committee per period (so hand-overs happen)."""

    def __init__(self, config: ChainConfig, seed: bytes = b"lightpost devnet committee") -> None:
        import py_arkworks_bls12381 as bls  # the beacon extra

        self._bls = bls
        self.config = config
        self.seed = seed
        self._committees: dict[int, tuple[list[int], SyncCommittee]] = {}
        self.blocks: dict[int, Block] = {}
        self._parent = bytes(32)

    def secret_keys(self, period: int) -> list[int]:
        out = []
        for i in range(self.config.committee_size):
            digest = sha256(self.seed + period.to_bytes(8, "little") + i.to_bytes(4, "little"))
            out.append(int.from_bytes(digest.digest(), "big") % (CURVE_ORDER - 1) + 1)
        return out

    def committee(self, period: int) -> SyncCommittee:
        if period not in self._committees:
            keys = self.secret_keys(period)
            points = [self._bls.G1Point() * self._bls.Scalar(k) for k in keys]
            total = points[0]
            for p in points[1:]:
                total = total + p
            committee = SyncCommittee(
                pubkeys=tuple(bytes(p.to_compressed_bytes()) for p in points),
                aggregate_pubkey=bytes(total.to_compressed_bytes()),
            )
            self._committees[period] = (keys, committee)
        return self._committees[period][1]

    def add_block(
        self, slot: int, execution: ExecutionPayloadHeader, finalized_slot: int | None = None
    ) -> Block:
        """The block at ``slot`` carrying ``execution``; its state finalizes the block at
        ``finalized_slot`` (None: nothing finalized yet, the zero root)."""
        depth, index = _subtree(EXECUTION_PAYLOAD_GINDEX)
        body = [ZERO_CHUNK] * (1 << depth)
        body[index] = execution.root()
        body_root, execution_branch = merkle_branch(body, index)

        finalized = None if finalized_slot is None else self.blocks[finalized_slot].header
        finalized_root = bytes(32) if finalized is None else finalized.beacon.root()
        epoch = 0 if finalized is None else self.config.epoch_at(finalized.beacon.slot)
        period = self.config.period_at(slot)
        depth, current_index = _subtree(CURRENT_SYNC_COMMITTEE_GINDEX_ELECTRA)
        _, next_index = _subtree(NEXT_SYNC_COMMITTEE_GINDEX_ELECTRA)
        _, checkpoint_index = _subtree(FINALIZED_ROOT_GINDEX_ELECTRA // 2)
        state = [ZERO_CHUNK] * (1 << depth)
        state[0] = uint64_root(slot)
        state[checkpoint_index] = merkleize([uint64_root(epoch), finalized_root])
        state[current_index] = self.committee(period).root()
        state[next_index] = self.committee(period + 1).root()
        state_root, current_branch = merkle_branch(state, current_index)
        _, next_branch = merkle_branch(state, next_index)
        _, checkpoint_branch = merkle_branch(state, checkpoint_index)

        beacon = BeaconBlockHeader(
            slot=slot, parent_root=self._parent, state_root=state_root, body_root=body_root
        )
        block = Block(
            header=LightClientHeader(
                beacon=beacon, execution=execution, execution_branch=execution_branch
            ),
            current_branch=current_branch,
            next_branch=next_branch,
            finality_branch=(uint64_root(epoch), *checkpoint_branch),
            finalized=finalized,
        )
        self._parent = beacon.root()
        self.blocks[slot] = block
        return block

    def bootstrap(self, slot: int) -> dict[str, Any]:
        """A ``bootstrap`` answer for the block at ``slot``."""
        block = self.blocks[slot]
        return {
            "version": FORK,
            "data": {
                "header": header_to_json(block.header),
                "current_sync_committee": committee_to_json(
                    self.committee(self.config.period_at(slot))
                ),
                "current_sync_committee_branch": _hex(block.current_branch),
            },
        }

    def update(
        self, attested_slot: int, signature_slot: int, *, kind: str = "update", signers: int = -1
    ) -> dict[str, Any]:
        """An answer of ``kind`` (update, finality_update, optimistic_update) attesting the block
        at ``attested_slot``, signed at ``signature_slot`` by the first ``signers`` (all: -1)
        of that period's committee."""
        block = self.blocks[attested_slot]
        size = self.config.committee_size
        count = size if signers < 0 else signers
        keys = self.secret_keys(self.config.period_at(signature_slot))[:count]
        message = signing_root(self.config, block.header, signature_slot)
        point = self._bls.G2Point.hash_to_curve(message, DST) * self._bls.Scalar(
            sum(keys) % CURVE_ORDER
        )
        bits = sum(1 << i for i in range(count)).to_bytes(size // 8, "little")
        data: dict[str, Any] = {"attested_header": header_to_json(block.header)}
        if kind == "update":
            period = self.config.period_at(attested_slot)
            data["next_sync_committee"] = committee_to_json(self.committee(period + 1))
            data["next_sync_committee_branch"] = _hex(block.next_branch)
        if kind in ("update", "finality_update"):
            finalized = block.finalized or LightClientHeader(
                execution=ExecutionPayloadHeader(), execution_branch=(ZERO_CHUNK,) * 4
            )
            data["finalized_header"] = header_to_json(finalized)
            data["finality_branch"] = _hex(block.finality_branch)
        data["sync_aggregate"] = {
            "sync_committee_bits": "0x" + bits.hex(),
            "sync_committee_signature": "0x" + bytes(point.to_compressed_bytes()).hex(),
        }
        data["signature_slot"] = str(signature_slot)
        return {"version": FORK, "data": data}


def _hex(branch: tuple[bytes, ...]) -> list[str]:
    return ["0x" + b.hex() for b in branch]
