"""The verification ladder without a socket: a synthetic block built from the anvil
vector's header, real signed inbox transactions, receipts and an EIP-1186 proof made
with lightpost.core.trie -- then every rule tampered with."""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lightpost.core import rlp
from lightpost.core.envelope import Post, Record, channel_id, encode_post
from lightpost.core.hashing import keccak256
from lightpost.core.header import header_from_rpc, header_hash
from lightpost.core.inbox import accumulator_of, accumulator_slots, encode_post_log
from lightpost.core.keys import PrivateKey
from lightpost.core.receipts import Log, Receipt, logs_bloom, receipts_root
from lightpost.core.trie import (
    Account,
    encode_account,
    make_proof,
    ordered_trie_root,
    secure_trie_root,
    storage_key,
)
from lightpost.core.tx import DynamicFeeTx, LegacyTx, SignedTransaction, sign_transaction
from lightpost.core.verify import (
    Complete,
    Hidden,
    Mismatch,
    Problem,
    ProblemKind,
    Sequencer,
    check_post_tx,
    completeness_verdict,
    decode_inbox_log,
    is_final,
    is_seq_restart,
    prove_block_receipts,
    prove_block_transactions,
    verify_accumulators,
    verify_block_header,
    verify_included_tx,
    verify_signed,
    verify_signed_raw,
)
from lightpost.errors import LightpostError, ProofError
from lightpost_operator.contracts import inbox_runtime
from tests.core.chaindata import anvil_block

CHAIN_ID = 31337
INBOX = bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3")
INBOX_CODE = inbox_runtime()
CHANNEL = channel_id("c1")
KEY = PrivateKey.from_hex("0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d")
OTHER = PrivateKey.from_hex("0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a")


def _h(data: bytes) -> str:
    return "0x" + data.hex()


def _calldata(seq: int, text: str) -> bytes:
    record = Record(seq=seq, timestamp=1, content_type=1, payload=text.encode())
    return encode_post(Post(channel=CHANNEL, recipient=None, records=(record,)))


def _signed(
    nonce: int, data: bytes, *, key: PrivateKey = KEY, chain_id: int = CHAIN_ID, to: bytes = INBOX
) -> SignedTransaction:
    tx = DynamicFeeTx(
        chain_id=chain_id,
        nonce=nonce,
        max_priority_fee_per_gas=1,
        max_fee_per_gas=10**10,
        gas=200_000,
        to=to,
        value=0,
        data=data,
        access_list=(),
    )
    return sign_transaction(tx, key)


def tx_json(signed: SignedTransaction) -> dict[str, Any]:
    """The JSON-RPC rendering of a type-2 transaction (as eth_getTransactionByHash)."""
    tx = signed.tx
    assert isinstance(tx, DynamicFeeTx)
    return {
        "type": "0x2",
        "chainId": hex(tx.chain_id),
        "nonce": hex(tx.nonce),
        "maxPriorityFeePerGas": hex(tx.max_priority_fee_per_gas),
        "maxFeePerGas": hex(tx.max_fee_per_gas),
        "gas": hex(tx.gas),
        "to": _h(tx.to) if tx.to else None,
        "value": hex(tx.value),
        "input": _h(tx.data),
        "accessList": [],
        "yParity": hex(signed.signature.y_parity),
        "v": hex(signed.signature.y_parity),
        "r": hex(signed.signature.r),
        "s": hex(signed.signature.s),
        "hash": _h(signed.hash),
        "from": _h(OTHER.address),  # a lie the verifier must never read
    }


def receipt_json(receipt: Receipt) -> dict[str, Any]:
    return {
        "type": hex(receipt.tx_type),
        "status": hex(receipt.status or 0),
        "cumulativeGasUsed": hex(receipt.cumulative_gas_used),
        "logsBloom": _h(receipt.logs_bloom),
        "logs": [
            {
                "address": _h(log.address),
                "topics": [_h(t) for t in log.topics],
                "data": _h(log.data),
            }
            for log in receipt.logs
        ],
    }


class Block:
    """Two inbox posts by KEY (indexes 1 and 2) and one plain transfer, in one block."""

    def __init__(self) -> None:
        self.calldatas = [_calldata(0, "hello"), _calldata(1, "world")]
        self.txs = [
            _signed(0, self.calldatas[0]),
            _signed(1, b"", to=OTHER.address),
            _signed(2, self.calldatas[1]),
        ]
        self.logs = [
            Log(address=INBOX, topics=topics, data=data)
            for topics, data in (
                encode_post_log(KEY.address, c, i + 1) for i, c in enumerate(self.calldatas)
            )
        ]
        logs_per_tx: list[tuple[Log, ...]] = [(self.logs[0],), (), (self.logs[1],)]
        self.receipts = tuple(
            Receipt(
                tx_type=2,
                status=1,
                cumulative_gas_used=50_000 * (i + 1),
                logs_bloom=logs_bloom(logs),
                logs=logs,
            )
            for i, logs in enumerate(logs_per_tx)
        )
        header = copy.deepcopy(anvil_block()["block"])
        header["transactionsRoot"] = _h(ordered_trie_root([t.raw for t in self.txs]))
        header["receiptsRoot"] = _h(receipts_root(self.receipts))
        # The inbox account with the two slots, in a one-account state trie.
        acc = accumulator_of(self.calldatas)
        slot_acc, slot_count = accumulator_slots(KEY.address, CHANNEL)
        self.storage = {
            storage_key(slot_acc): rlp.encode(acc),
            storage_key(slot_count): rlp.encode(2),
        }
        from lightpost.core.trie import trie_root

        self.account = Account(
            nonce=1,
            balance=0,
            storage_root=trie_root(self.storage),
            code_hash=keccak256(INBOX_CODE),
        )
        state = {keccak256(INBOX): encode_account(self.account)}
        header["stateRoot"] = _h(secure_trie_root({INBOX: encode_account(self.account)}))
        self.state = state
        header["transactions"] = [tx_json(t) for t in self.txs]
        header["hash"] = _h(header_hash(header_from_rpc(header)))
        self.json = header
        self.hash = bytes.fromhex(header["hash"][2:])
        self.header = header_from_rpc(header)
        self.acc = acc

    def slot_value(self, slot: int) -> int:
        """The inbox's storage value at ``slot`` (0 when unset)."""
        raw = self.storage.get(storage_key(slot))
        value = rlp.decode(raw) if raw is not None else b""
        assert isinstance(value, bytes)
        return int.from_bytes(value, "big")

    def proof(self, slots: list[int] | None = None) -> dict[str, Any]:
        """The eth_getProof answer for ``slots`` (default: KEY's (acc, count) slots)."""
        if slots is None:
            slots = list(accumulator_slots(KEY.address, CHANNEL))
        return {
            "address": _h(INBOX),
            "nonce": "0x1",
            "balance": "0x0",
            "codeHash": _h(self.account.code_hash),
            "storageHash": _h(self.account.storage_root),
            "accountProof": [_h(n) for n in make_proof(self.state, keccak256(INBOX))],
            "storageProof": [
                {
                    "key": hex(slot),
                    "value": hex(self.slot_value(slot)),
                    "proof": [_h(n) for n in make_proof(self.storage, storage_key(slot))],
                }
                for slot in slots
            ],
        }


@pytest.fixture(scope="module")
def block() -> Block:
    return Block()


# --- signed --------------------------------------------------------------------------


def test_signed_recovers_the_sender_and_ignores_from(block: Block) -> None:
    signed = verify_signed(tx_json(block.txs[0]), chain_id=CHAIN_ID)
    assert signed.sender == KEY.address  # "from" says OTHER
    assert verify_signed_raw(block.txs[0].raw, chain_id=CHAIN_ID).hash == block.txs[0].hash


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("input", "0x00", ProofError),  # forged calldata: hash no longer matches
        ("hash", "0x" + "11" * 32, ProofError),
        ("r", "0x1", LightpostError),
        ("chainId", "0x1", ProofError),
    ],
)
def test_signed_rejects_tampering(
    block: Block, field: str, value: str, error: type[Exception]
) -> None:
    forged = tx_json(block.txs[0])
    forged[field] = value
    with pytest.raises(error):
        verify_signed(forged, chain_id=CHAIN_ID)


def test_signed_requires_our_chain_id_and_eip155() -> None:
    foreign = _signed(0, b"x", chain_id=1)
    with pytest.raises(ProofError, match="chain id 1"):
        verify_signed_raw(foreign.raw, chain_id=CHAIN_ID)
    legacy = sign_transaction(
        LegacyTx(chain_id=None, nonce=0, gas_price=1, gas=21_000, to=INBOX, value=0, data=b""),
        KEY,
    )
    with pytest.raises(ProofError, match="unprotected"):
        verify_signed_raw(legacy.raw, chain_id=CHAIN_ID)


def test_post_must_be_bound_to_its_transaction(block: Block) -> None:
    post = decode_inbox_log(block.logs[0], inbox=INBOX)
    check_post_tx(post, block.txs[0], inbox=INBOX)
    with pytest.raises(ProofError, match="calldata"):
        check_post_tx(post, block.txs[2], inbox=INBOX)
    with pytest.raises(ProofError, match="inbox"):
        check_post_tx(post, _signed(0, block.calldatas[0], to=OTHER.address), inbox=INBOX)
    with pytest.raises(ProofError, match="signer"):
        check_post_tx(post, _signed(0, block.calldatas[0], key=OTHER), inbox=INBOX)


# --- included --------------------------------------------------------------------------


def test_included_tx(block: Block) -> None:
    index, tx = verify_included_tx(
        block.json, block.hash, chain_id=CHAIN_ID, tx_hash=block.txs[2].hash
    )
    assert index == 2 and tx.sender == KEY.address


def test_header_must_be_the_agreed_one(block: Block) -> None:
    with pytest.raises(ProofError, match="agreed"):
        verify_block_header(block.json, bytes(32))
    for field in (
        "stateRoot",
        "receiptsRoot",
        "transactionsRoot",
        "gasUsed",
        "timestamp",
        "parentBeaconBlockRoot",
    ):
        forged = copy.deepcopy(block.json)
        value = forged[field]
        forged[field] = (
            hex(int(value, 16) + 1)
            if len(value) < 20
            else value[:-1] + ("0" if value[-1] != "0" else "1")
        )
        with pytest.raises(ProofError, match="header"):
            verify_block_header(forged, block.hash)
    wrong_hash = dict(block.json, hash="0x" + "22" * 32)
    with pytest.raises(ProofError):
        verify_block_header(wrong_hash, block.hash)


def test_forged_log_data_and_fake_logs_are_not_in_the_proven_receipts(block: Block) -> None:
    from lightpost.core.reconcile import Claim, block_truth, reconcile_block

    receipts = prove_block_receipts(block.header, [receipt_json(r) for r in block.receipts])
    truth = block_truth(
        receipts, inbox=INBOX, policies={CHANNEL: frozenset({KEY.address})}, only=None
    )
    assert truth == {(0, 0): block.logs[0], (2, 1): block.logs[1]}
    forged = Log(address=INBOX, topics=block.logs[0].topics, data=block.logs[0].data[:-1] + b"!")

    def claim(tx_index: int, log_index: int, log: Log) -> Claim:
        return Claim(block.header.number, block.hash, bytes(32), tx_index, log_index, log)

    honest = {claim(0, 0, block.logs[0]): frozenset({"rpc#1"})}
    honest[claim(2, 1, block.logs[1])] = frozenset({"rpc#1"})
    for lie in (claim(0, 0, forged), claim(1, 1, block.logs[0]), claim(7, 0, block.logs[0])):
        got = reconcile_block(
            number=block.header.number,
            agreed_hash=block.hash,
            agreeing=frozenset({"rpc#0", "rpc#1"}),
            dissenting=frozenset(),
            truth=truth,
            claims={**honest, lie: frozenset({"rpc#0"})},
            answered=frozenset({"rpc#1"}),
            tx_hashes=[t.hash for t in block.txs],
        )
        assert [(p.kind, p.endpoints) for p in got.problems] == [("proof-failure", ("rpc#0",))]
        assert got.positions == ((0, 0), (2, 1))


def test_forged_receipts_do_not_rebuild_the_root(block: Block) -> None:
    receipts = [receipt_json(r) for r in block.receipts]
    receipts[0]["logs"][0]["data"] = receipts[0]["logs"][0]["data"][:-2] + "21"
    with pytest.raises(ProofError):  # the bloom still matches; the root does not
        prove_block_receipts(block.header, receipts)
    hidden = [receipt_json(r) for r in block.receipts]
    hidden[2]["logs"] = []
    with pytest.raises(ProofError):
        prove_block_receipts(block.header, hidden)


def test_forged_or_hidden_transactions_do_not_rebuild_the_root(block: Block) -> None:
    txs = [tx_json(t) for t in block.txs]
    assert len(prove_block_transactions(block.header, txs)) == 3
    with pytest.raises(ProofError):
        prove_block_transactions(block.header, txs[:2])
    forged = copy.deepcopy(txs)
    forged[0]["input"] = forged[0]["input"][:-2] + "00"
    with pytest.raises(ProofError):
        prove_block_transactions(block.header, forged)


def test_final() -> None:
    assert is_final(10, 10) and is_final(9, 10) and not is_final(11, 10)


# --- complete --------------------------------------------------------------------------


def _complete(
    block: Block,
    proof: Any,
    local_count: int = 0,
    posts: dict[int, bytes] | None = None,
    code_hash: bytes = keccak256(INBOX_CODE),
) -> Any:
    key = (KEY.address, CHANNEL)
    acc, count = verify_accumulators(
        block.header.state_root, proof, inbox=INBOX, inbox_code_hash=code_hash, keys=[key]
    )[key]
    return completeness_verdict(
        proven_acc=acc,
        proven_count=count,
        local_acc=bytes(32),
        local_count=local_count,
        new_posts=posts,
    )


def test_complete_when_everything_is_held(block: Block) -> None:
    verdict = _complete(block, block.proof(), posts={1: block.calldatas[0], 2: block.calldatas[1]})
    assert verdict == Complete(count=2, acc=block.acc)


def test_hidden_post_is_detected(block: Block) -> None:
    assert _complete(block, block.proof(), posts={1: block.calldatas[0]}) == Hidden(
        missing=1, proven_count=2
    )
    assert _complete(block, block.proof(), posts={2: block.calldatas[1]}) == Hidden(
        missing=1, proven_count=2
    )


def test_altered_or_reordered_posts_mismatch(block: Block) -> None:
    swapped = _complete(block, block.proof(), posts={1: block.calldatas[1], 2: block.calldatas[0]})
    assert isinstance(swapped, Mismatch)
    too_many = _complete(
        block, block.proof(), posts={1: block.calldatas[0], 2: block.calldatas[1], 3: b"x" * 70}
    )
    assert isinstance(too_many, Mismatch)


def test_wrong_proofs_raise(block: Block) -> None:
    proof = block.proof()
    proof["storageProof"][1]["value"] = "0x1"  # claims fewer posts
    with pytest.raises(ProofError):
        _complete(block, proof)
    proof = block.proof()
    proof["accountProof"][0] = proof["accountProof"][0][:-2] + "00"
    with pytest.raises(ProofError):
        _complete(block, proof)
    proof = block.proof()
    proof["storageProof"] = proof["storageProof"][:1]
    with pytest.raises(ProofError, match="lacks"):
        _complete(block, proof)
    with pytest.raises(ProofError, match="inbox code"):
        _complete(block, block.proof(), code_hash=bytes(32))


# --- problems and ordering ----------------------------------------------------------------


def test_problem_kinds_are_closed() -> None:
    assert {
        "unauthorized",
        "gap",
        "proof-failure",
        "disagreement",
        "hidden",
        "retracted",
        "undecodable",
        "over-budget",
        "seq-restart",
    } == set(ProblemKind)
    with pytest.raises(ValueError):
        Problem(kind="oops", details="")


def test_sequencer_table() -> None:
    seq: Sequencer[str] = Sequencer()
    assert seq.offer(5, "a").ready == ((5, "a"),)  # baseline
    assert seq.offer(5, "a again").duplicate  # replay
    held = seq.offer(8, "d")
    assert held.ready == () and held.gap == (6, 7)
    assert seq.offer(8, "d twice").duplicate
    assert seq.offer(6, "b").ready == ((6, "b"),)
    assert seq.gap() == (7, 7)
    assert seq.offer(7, "c").ready == ((7, "c"), (8, "d"))
    assert seq.gap() is None and seq.next_seq == 9
    seq.rewind(7)
    assert seq.offer(7, "c'").ready == ((7, "c'"),)


@settings(max_examples=150, deadline=None)
@given(st.permutations(list(range(12))))
def test_sequencer_delivers_each_once_in_order(order: list[int]) -> None:
    seq: Sequencer[int] = Sequencer(next_seq=0)
    out: list[int] = []
    for s in order + order[:4]:  # with replays
        out += [i for i, _ in seq.offer(s, s).ready]
    assert out == list(range(12))


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300), st.lists(st.binary(min_size=32, max_size=32), max_size=4))
def test_decoding_garbage_logs_raises_only_lightpost_errors(
    data: bytes, topics: list[bytes]
) -> None:
    with contextlib.suppress(LightpostError):
        decode_inbox_log(Log(address=INBOX, topics=tuple(topics), data=data), inbox=INBOX)


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["input", "r", "s", "nonce", "to", "type", "yParity"]),
        st.one_of(st.text(max_size=8), st.none(), st.integers()),
    )
)
def test_garbage_transactions_raise_only_lightpost_errors(changes: dict[str, Any]) -> None:
    obj = dict(tx_json(_signed(0, b"abc")), **changes)
    with contextlib.suppress(LightpostError):
        verify_signed(obj, chain_id=CHAIN_ID)


@pytest.mark.parametrize(
    ("seq", "expected", "block", "last_block", "restart"),
    [
        (0, 5, 20, 10, True),  # seq 0 again above every sequenced block: a restart
        (4, 5, 20, 10, True),
        (0, 5, 10, 10, False),  # the same block again (rescan)
        (0, 5, 8, 10, False),  # an older block (rescan from a held cursor)
        (5, 5, 20, 10, False),  # the next seq: not a duplicate
        (7, 5, 20, 10, False),  # held behind a gap: not below the expected seq
        (0, None, 20, 10, False),  # no baseline yet
        (0, 5, 20, None, False),  # nothing sequenced from a known block yet
    ],
)
def test_is_seq_restart(
    seq: int, expected: int | None, block: int, last_block: int | None, restart: bool
) -> None:
    assert is_seq_restart(seq, expected, block, last_block) is restart
