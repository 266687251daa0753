"""The sender's rules, driven step by step over scripted fake endpoints (no sockets)."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lightpost.adapters.store import Store
from lightpost.core.envelope import Reassembler, decode_post
from lightpost.core.fees import GWEI, Eip1559FeePolicy
from lightpost.core.keys import PrivateKey
from lightpost.core.outbox import State
from lightpost.core.tx import DynamicFeeTx, SignedTransaction, decode_transaction, sign_transaction
from lightpost.node import sender_track
from lightpost.node.chain import Chain
from lightpost.node.sender import Sender, SenderSettings, content_type_code
from tests.conftest import ANVIL_DEV_KEYS
from tests.node.fakechain import (
    CHAIN_ID,
    FakeEndpoint,
    FakeNet,
    block_json,
    is_acceptable_replacement,
    tx_json,
)

KEY = PrivateKey.from_hex(ANVIL_DEV_KEYS[1])
OTHER = PrivateKey.from_hex(ANVIL_DEV_KEYS[2])
INBOX = bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3")
CAP = 100 * GWEI
T0 = 1_767_225_600.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "store.sqlite3") as s:
        yield s


def make(
    store: Store,
    net: FakeNet,
    *,
    n: int = 1,
    k: int | None = None,
    endpoints: list[FakeEndpoint] | None = None,
    **overrides: Any,
) -> Sender:
    eps = endpoints or [FakeEndpoint(f"rpc#{i}", net) for i in range(n)]
    chain = Chain(eps, quorum=k or len(eps) // 2 + 1)
    values: dict[str, Any] = {
        "chain_id": CHAIN_ID,
        "mode": "channel",
        "inbox": INBOX,
        "policy": Eip1559FeePolicy(max_fee_cap=CAP, priority_fee=GWEI),
        "batch_bytes": 4096,
        "batch_delay_s": 0.0,
        "stuck_after_s": 30.0,
    }
    values.update(overrides)
    return Sender(key=KEY, store=store, chain=chain, settings=SenderSettings(**values))


def enqueue(sender: Sender, count: int, size: int = 10, channel: str = "c") -> list[int]:
    """``count`` incompressible messages (compression would blur the sizes)."""
    return [
        sender.enqueue(
            payload=random.Random(i).randbytes(size), channel=channel, content_type=1, now=T0
        )
        for i in range(count)
    ]


def posts_on_chain(net: FakeNet) -> list[tuple[int, int]]:
    """(seq, chunk index or -1) of every record our key put on the canonical chain."""
    out = []
    for tx in net.in_chain():
        if tx.sender != KEY.address or not tx.tx.data or tx.hash in net.reverted:
            continue  # a reverted call posted nothing
        post = decode_post(tx.tx.data)
        out += [(r.seq, r.chunk.index if r.chunk else -1) for r in post.records]
    return out


def run(sender: Sender, net: FakeNet, now: float, rounds: int = 3) -> float:
    for _ in range(rounds):
        sender.step(now)
        net.mine()
        now += 1
    return now


# --- batching and chunking --------------------------------------------------------------


def test_batches_wait_for_the_delay_then_go_as_one_transaction(store: Store) -> None:
    net = FakeNet()
    sender = make(store, net, batch_delay_s=5.0)
    enqueue(sender, 10)
    assert sender.step(T0 + 1).signed == 0  # not due, not full
    result = sender.step(T0 + 5)
    assert (result.signed, result.broadcast) == (1, 1)
    assert len(net.pool) == 1
    (tx,) = net.pool.values()
    assert tx.tx.to == INBOX
    post = decode_post(tx.tx.data)
    assert [r.seq for r in post.records] == list(range(10))
    assert store.counts_by_state()[State.BROADCAST] == 10


def test_full_posts_go_at_once_and_the_partial_one_waits(store: Store) -> None:
    net = FakeNet()
    sender = make(store, net, batch_bytes=300, batch_delay_s=5.0)
    enqueue(sender, 12, size=40)  # 62 bytes per record: 3 per 300-byte post
    assert sender.step(T0 + 1).signed == 3  # posts 1-3 are full, post 4 not
    assert store.counts_by_state()[State.QUEUED] == 3
    assert sender.step(T0 + 6).signed == 1
    net.mine()
    run(sender, net, T0 + 7)
    assert sorted(posts_on_chain(net)) == [(s, -1) for s in range(12)]
    nonces = sorted(t.tx.nonce for t in net.in_chain())
    assert nonces == [0, 1, 2, 3]


def test_large_message_is_chunked_and_linked_to_its_last_chunk(store: Store) -> None:
    net = FakeNet()
    sender = make(store, net, batch_bytes=300)
    payload = random.Random(7).randbytes(1000)  # incompressible: several chunks
    mid = sender.enqueue(payload=payload, channel="c", now=T0)
    run(sender, net, T0)
    records = posts_on_chain(net)
    assert len(records) >= 4 and {seq for seq, _ in records} == {0}
    assert sorted(i for _, i in records) == list(range(len(records)))  # each chunk once
    reassembler = Reassembler()
    done = None
    for tx in net.in_chain():
        for r in decode_post(tx.tx.data).records:
            done = reassembler.add(r) or done
    assert done is not None and done.payload == payload
    linked = store.message(mid)
    assert linked.state is State.INCLUDED
    assert store.transaction(linked.tx_id or 0).nonce == len(records) - 1


class _CrashAfter:
    """A store proxy that 'crashes' the process after ``n`` record_signed calls."""

    def __init__(self, store: Store, n: int) -> None:
        self._store = store
        self._left = n

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def record_signed(self, **kwargs: Any) -> int:
        if self._left == 0:
            raise SystemExit("crash")
        self._left -= 1
        return self._store.record_signed(**kwargs)


def test_chunked_message_resumes_after_a_crash_without_resending_chunks(
    store: Store,
) -> None:
    net = FakeNet()
    payload = random.Random(7).randbytes(1000)
    first = make(store, net, batch_bytes=300)
    first.store = _CrashAfter(store, 2)  # type: ignore[assignment]
    first.enqueue(payload=payload, channel="c", now=T0)
    with pytest.raises(SystemExit):
        first.step(T0)  # two chunk transactions stored and sent, then the crash
    assert len(net.pool) == 2
    net.mine(5)  # deep enough to be final before the restart looks
    second = make(store, net, batch_bytes=300)
    run(second, net, T0 + 1)
    records = posts_on_chain(net)
    assert len(records) >= 4
    assert sorted(i for _, i in records) == list(range(len(records)))
    assert store.counts_by_state()[State.INCLUDED] == 1


def test_chunked_message_waits_for_room_for_all_its_chunks(store: Store) -> None:
    net = FakeNet()
    sender = make(store, net, batch_bytes=300, max_in_flight=3)
    enqueue(sender, 1, channel="small")
    sender.step(T0)  # one tx in flight: room 2
    sender.enqueue(payload=random.Random(7).randbytes(1000), channel="c", now=T0)
    assert sender.step(T0 + 1).signed == 0
    net.mine()
    sender.step(T0 + 2)  # the small one is mined; room 3 = max: chunks go, spread
    run(sender, net, T0 + 3, rounds=4)
    records = [i for seq, i in posts_on_chain(net) if i >= 0]
    assert sorted(records) == list(range(len(records)))


def test_direct_mode_sends_the_post_to_the_recipient(store: Store) -> None:
    net = FakeNet()
    sender = make(store, net, mode="direct", inbox=None)
    sender.enqueue(payload=b"hello", recipient=OTHER.address, now=T0)
    sender.step(T0)
    (tx,) = net.pool.values()
    assert tx.tx.to == OTHER.address
    post = decode_post(tx.tx.data)
    assert post.recipient == OTHER.address
    assert content_type_code("text") == 1 and content_type_code("5") == 5


# --- fees --------------------------------------------------------------------------------


def test_fee_cap_holds_messages_visibly_and_releases_them_when_fees_drop(store: Store) -> None:
    net = FakeNet(base_fee=200 * GWEI)
    net.mine()
    sender = make(store, net)
    ids = enqueue(sender, 3)
    result = sender.step(T0)
    assert (result.signed, result.held) == (0, 3)
    assert store.counts_by_state()[State.HELD] == 3
    assert "above the fee cap" in (store.message(ids[0]).hold_reason or "")
    status = sender.status(T0)
    assert not status["healthy"] and status["fees"]["above_cap"] is True
    assert status["held"][0]["count"] == 3
    assert sender.step(T0 + 1).signed == 0  # still high: nothing lost, nothing sent
    net.base_fee = GWEI
    net.mine()
    result = sender.step(T0 + 2)
    assert (result.released, result.signed) == (3, 1)
    run(sender, net, T0 + 3)
    assert store.counts_by_state()[State.INCLUDED] == 3
    assert sorted(posts_on_chain(net)) == [(s, -1) for s in range(3)]


def test_stuck_transaction_is_replaced_with_a_ten_percent_bump(store: Store) -> None:
    net = FakeNet()
    sender = make(store, net)
    enqueue(sender, 2)
    sender.step(T0)
    (first,) = net.pool.values()
    net.base_fee = first.tx.max_fee_per_gas + 1  # type: ignore[union-attr]
    net.mine()  # not includable any more
    assert sender.step(T0 + 10).bumped == 0  # not stuck yet
    net.base_fee = GWEI
    net.blocks[-1].base_fee = first.tx.max_fee_per_gas + 1  # type: ignore[union-attr]
    result = sender.step(T0 + 31)
    assert result.bumped == 1
    (second,) = net.pool.values()
    assert second.tx.nonce == first.tx.nonce and second.hash != first.hash
    old = store.pending_transactions()[0].candidates[0].fees
    new = store.pending_transactions()[0].candidates[1].fees
    assert is_acceptable_replacement(old, new)
    run(sender, net, T0 + 32)
    assert store.counts_by_state()[State.INCLUDED] == 2
    assert len(posts_on_chain(net)) == 2


def test_replacement_underpriced_answer_bumps_properly(store: Store) -> None:
    net = FakeNet()
    sender = make(store, net)
    # Someone else's transaction (same key, another device) sits in the pool at nonce 0.
    foreign = sign_transaction(
        DynamicFeeTx(
            chain_id=CHAIN_ID,
            nonce=0,
            max_priority_fee_per_gas=GWEI,
            max_fee_per_gas=3 * GWEI,
            gas=21_000,
            to=OTHER.address,
        ),
        KEY,
    )
    net.submit("rpc#0", foreign.raw)
    enqueue(sender, 1)
    net.base_fee = GWEI // 2  # the fresh quote (2 x base + tip = 2 gwei) is below 3 gwei
    net.mine(0)
    net.blocks[-1].base_fee = GWEI // 2
    result = sender.step(T0)
    assert result.signed == 1 and result.bumped == 1  # one bump per step, not a loop
    now = T0 + 1
    while net.pool[(KEY.address, 0)].hash == foreign.hash:
        assert sender.step(now).bumped == 1
        now += 1
    tx = store.pending_transactions()[0]
    assert len(tx.candidates) >= 2 and tx.state is State.BROADCAST
    for old, new in zip(tx.candidates, tx.candidates[1:], strict=False):
        assert is_acceptable_replacement(old.fees, new.fees)
    run(sender, net, now)
    assert posts_on_chain(net) == [(0, -1)]


def test_insufficient_funds_holds_until_the_balance_covers_it(store: Store) -> None:
    net = FakeNet(balance=1000)
    sender = make(store, net)
    ids = enqueue(sender, 2)
    assert sender.step(T0).held == 2
    assert "insufficient funds" in (store.message(ids[0]).hold_reason or "")
    assert not sender.status(T0)["healthy"]
    net.balance = 10**20
    assert sender.step(T0 + 1).signed == 1
    run(sender, net, T0 + 2)
    assert store.counts_by_state()[State.INCLUDED] == 2


# --- nonce -------------------------------------------------------------------------------


def test_already_known_is_success(store: Store) -> None:
    net = FakeNet()
    sender = make(store, net, rebroadcast_interval_s=1.0)
    enqueue(sender, 1)
    sender.step(T0)
    result = sender.step(T0 + 2)  # rebroadcast: the pool answers "already known"
    assert result.broadcast == 1
    assert store.pending_transactions()[0].state is State.BROADCAST
    assert "broadcast nonce 0" not in sender.problems


def test_crash_after_send_before_mark_resolves_nonce_too_low_as_included(store: Store) -> None:
    net = FakeNet()
    sender = make(store, net)
    (mid,) = enqueue(sender, 1)
    sender.step(T0)  # signed, stored, sent
    tx = store.pending_transactions()[0]
    net.mine()
    # A restarted process finds the tx still SIGNED in its view (crash before mark):
    # simulate by a fresh sender whose rebroadcast meets "nonce too low".
    restarted = make(store, net)
    restarted._track = lambda now, result: None  # type: ignore[method-assign]
    restarted.step(T0 + 1)
    assert store.message(mid).state is State.INCLUDED
    assert store.transaction(tx.id).mined_hash == tx.tx_hash
    assert len(posts_on_chain(net)) == 1


def test_nonce_consumed_by_someone_else_requeues_and_resigns(store: Store) -> None:
    net = FakeNet()
    sender = make(store, net, rebroadcast_interval_s=1.0)
    (mid,) = enqueue(sender, 1)
    sender.step(T0)
    ours = store.pending_transactions()[0]
    foreign = sign_transaction(
        DynamicFeeTx(
            chain_id=CHAIN_ID,
            nonce=0,
            max_priority_fee_per_gas=GWEI,
            max_fee_per_gas=5 * GWEI,
            gas=21_000,
            to=OTHER.address,
        ),
        KEY,
    )
    net.mine_foreign(foreign)
    net.mine(1)  # not final yet (finalized = latest - 2): hold
    sender.step(T0 + 1)
    assert store.message(mid).state in (State.SIGNED, State.BROADCAST)
    net.mine(2)
    now = run(sender, net, T0 + 2, rounds=4)
    sender.step(now)
    m = store.message(mid)
    assert m.state in (State.INCLUDED, State.FINAL)
    assert store.transaction(m.tx_id or 0).nonce == 1
    assert ours.tx_hash not in {t.hash for t in net.in_chain()}
    assert posts_on_chain(net) == [(0, -1)]


def test_stale_nonce_endpoint_is_outvoted(store: Store) -> None:
    net = FakeNet()
    helper = make(store, net)
    enqueue(helper, 1)
    run(helper, net, T0)
    eps = [
        FakeEndpoint("rpc#0", net),
        FakeEndpoint("rpc#1", net, stale_nonce=1),
        FakeEndpoint("rpc#2", net),
    ]
    sender = make(store, net, endpoints=eps)
    enqueue(sender, 3)
    run(sender, net, T0 + 10)
    assert sorted(posts_on_chain(net)) == [(s, -1) for s in range(4)]
    assert [t.tx.nonce for t in net.in_chain()] == [0, 1]


def test_lost_store_adopts_the_quorum_count(tmp_path: Path) -> None:
    net = FakeNet()
    with Store.open(tmp_path / "a.sqlite3") as old:
        first = make(old, net)
        enqueue(first, 2)
        run(first, net, T0)
    with Store.open(tmp_path / "b.sqlite3") as fresh:  # the device lost its disk
        eps = [FakeEndpoint(f"rpc#{i}", net, stale_nonce=5 if i == 2 else 0) for i in range(3)]
        sender = make(fresh, net, endpoints=eps)
        enqueue(sender, 1, channel="d")
        run(sender, net, T0 + 5)
        assert fresh.counts_by_state()[State.INCLUDED] == 1
    assert [t.tx.nonce for t in net.in_chain()] == [0, 1]


def test_no_nonce_quorum_signs_nothing_and_says_why(store: Store) -> None:
    net = FakeNet()
    eps = [FakeEndpoint("rpc#0", net), FakeEndpoint("rpc#1", net, stale_nonce=0)]
    net_b = FakeNet()
    net_b.mine_foreign(
        sign_transaction(
            DynamicFeeTx(
                chain_id=CHAIN_ID,
                nonce=0,
                max_priority_fee_per_gas=1,
                max_fee_per_gas=GWEI,
                gas=21_000,
                to=OTHER.address,
            ),
            KEY,
        )
    )
    eps[1].net = net_b  # two endpoints, two different histories at the same height
    net.mine()
    sender = make(store, net, endpoints=eps, k=2)
    enqueue(sender, 1)
    assert sender.step(T0).signed == 0
    assert sender.nonce_hold is not None
    assert not sender.status(T0)["healthy"]


def test_gap_in_local_nonces_is_filled_with_a_self_transfer(store: Store) -> None:
    net = FakeNet()
    store.set_next_nonce(2)  # nonces 0 and 1 were handed out but nothing was stored
    sender = make(store, net)
    enqueue(sender, 1)
    run(sender, net, T0)
    mined = net.in_chain()
    assert [t.tx.nonce for t in mined] == [0, 1, 2]
    assert [t.tx.to for t in mined[:2]] == [KEY.address, KEY.address]
    assert posts_on_chain(net) == [(0, -1)]


# --- endpoints ---------------------------------------------------------------------------


def test_down_endpoint_does_not_stop_or_duplicate(store: Store) -> None:
    net = FakeNet()
    eps = [FakeEndpoint("rpc#0", net), FakeEndpoint("rpc#1", net, down=True)]
    eps.append(FakeEndpoint("rpc#2", net))
    sender = make(store, net, endpoints=eps)
    enqueue(sender, 5)
    run(sender, net, T0)
    assert sorted(posts_on_chain(net)) == [(s, -1) for s in range(5)]
    status = sender.status(T0)
    assert [e["reachable"] for e in status["endpoints"]] == [True, False, True]
    assert status["healthy"] and status["warnings"] == ["rpc#1 unreachable"]


def test_a_lying_receipt_does_not_count(store: Store) -> None:
    net = FakeNet()

    def liar(method: str, params: Any, answer: Any) -> Any:
        if method == "eth_getTransactionReceipt" and answer is None:
            return {"blockHash": "0x" + "11" * 32, "blockNumber": "0x1", "status": "0x1"}
        return answer

    eps = [FakeEndpoint("rpc#0", net, hook=liar), FakeEndpoint("rpc#1", net)]
    eps.append(FakeEndpoint("rpc#2", net))
    sender = make(store, net, endpoints=eps)
    enqueue(sender, 1)
    sender.step(T0)
    sender.step(T0 + 1)  # not mined: the fake receipt's block hash is not canonical
    assert store.counts_by_state()[State.BROADCAST] == 1


# --- reorgs and finality -------------------------------------------------------------------


def test_reorg_detected_by_block_hash_rebroadcasts_and_lands_once(store: Store) -> None:
    net = FakeNet()
    sender = make(store, net)
    (mid,) = enqueue(sender, 1)
    now = run(sender, net, T0, rounds=2)
    tx = store.transaction(store.message(mid).tx_id or 0)
    assert tx.state is State.INCLUDED and tx.included is not None
    height = tx.included.number
    net.reorg(net.head - height + 1)  # same heights, other hashes, our tx gone
    sender.step(now)
    assert store.transaction(tx.id).state in (State.SIGNED, State.BROADCAST)
    now = run(sender, net, now + 1, rounds=3)
    tx = store.transaction(tx.id)
    assert tx.state is State.INCLUDED and tx.included is not None
    assert tx.included.hash == net.blocks[tx.included.number].hash
    assert posts_on_chain(net) == [(0, -1)]


def test_reverted_transaction_requeues_its_messages_at_finality(store: Store) -> None:
    net = FakeNet()
    sender = make(store, net)
    (mid,) = enqueue(sender, 1)
    now = run(sender, net, T0, rounds=2)
    first = store.transaction(store.message(mid).tx_id or 0)
    assert first.state is State.INCLUDED
    net.reverted.add(first.mined_hash or first.tx_hash)  # the inbox call failed
    now = run(sender, net, now, rounds=5)  # reaches finality: the nonce is spent, no post
    now = run(sender, net, now, rounds=6)
    again = store.transaction(store.message(mid).tx_id or 0)
    assert again.nonce == first.nonce + 1  # re-signed with a new nonce
    assert again.tx_hash != first.tx_hash
    assert again.state is State.FINAL
    assert posts_on_chain(net) == [(0, -1)]  # posted exactly once, by the second tx


def test_one_endpoint_claiming_a_revert_does_not_resend(store: Store) -> None:
    net = FakeNet()
    liar = FakeEndpoint("rpc#2", net)
    eps = [FakeEndpoint("rpc#0", net), FakeEndpoint("rpc#1", net), liar]
    sender = make(store, net, endpoints=eps)
    (mid,) = enqueue(sender, 1)
    now = run(sender, net, T0, rounds=2)
    first = store.transaction(store.message(mid).tx_id or 0)
    lie = {first.mined_hash or first.tx_hash}
    real_receipt = net.receipt

    def liar_receipt(tx_hash: bytes) -> dict[str, Any] | None:
        receipt = real_receipt(tx_hash)
        if receipt is not None and tx_hash in lie:
            receipt = {**receipt, "status": "0x0"}
        return receipt

    liar.hook = lambda method, params, answer: (
        liar_receipt(bytes.fromhex(params[0][2:]))
        if method == "eth_getTransactionReceipt"
        else answer
    )
    run(sender, net, now, rounds=6)
    assert store.message(mid).tx_id == first.id
    assert store.transaction(first.id).state is State.FINAL
    assert posts_on_chain(net) == [(0, -1)]


def test_reorg_that_remines_elsewhere_records_the_new_block(store: Store) -> None:
    net = FakeNet()
    sender = make(store, net)
    (mid,) = enqueue(sender, 1)
    now = run(sender, net, T0, rounds=2)
    before = store.transaction(store.message(mid).tx_id or 0).included
    net.reorg(net.head - (before.number if before else 0) + 1, keep_txs=True)
    sender.step(now)
    after = store.transaction(store.message(mid).tx_id or 0).included
    assert before is not None and after is not None
    assert after.number == before.number and after.hash != before.hash


def test_finality_then_pruning_keeps_the_store_small(store: Store) -> None:
    net = FakeNet()
    sender = make(store, net, prune_after_s=100.0)
    enqueue(sender, 4)
    now = run(sender, net, T0, rounds=2)
    net.mine(3)
    sender.step(now)
    assert store.counts_by_state()[State.FINAL] == 4
    assert sender.step(now + 200).pruned == 1
    assert sum(store.counts_by_state().values()) == 0
    assert store.nonce_inputs().final_next == 1
    enqueue(sender, 1, channel="c")  # seqs continue after pruning
    run(sender, net, now + 201)
    assert sorted(posts_on_chain(net)) == [(s, -1) for s in range(5)]


def test_restart_rebroadcasts_a_transaction_the_pool_lost(store: Store) -> None:
    net = FakeNet()
    sender = make(store, net)
    enqueue(sender, 2)
    sender.step(T0)
    net.pool.clear()  # the endpoint restarted and forgot it
    net.mine()
    restarted = make(store, net)
    run(restarted, net, T0 + 1)
    assert store.counts_by_state()[State.INCLUDED] == 2
    assert len(posts_on_chain(net)) == 2


def test_stored_raw_transaction_is_what_gets_broadcast(store: Store) -> None:
    net = FakeNet()
    sender = make(store, net)
    enqueue(sender, 3)
    sender.step(T0)
    (tx,) = store.pending_transactions()
    assert net.sent == [tx.raw]
    decoded = decode_transaction(tx.raw, chain_id=CHAIN_ID)
    assert isinstance(decoded, SignedTransaction) and decoded.sender == KEY.address


# --- proof of inclusion (issue 12, finding 2) ------------------------------------------------


def _receipt_in(net: FakeNet, number: int, tx_hash: bytes) -> dict[str, Any]:
    """A receipt claiming ``tx_hash`` sits in the real, canonical block ``number``."""
    return {
        "transactionHash": "0x" + tx_hash.hex(),
        "transactionIndex": "0x0",
        "blockHash": "0x" + net.blocks[number].hash.hex(),
        "blockNumber": hex(number),
        "status": "0x1",
        "cumulativeGasUsed": "0x5208",
        "logsBloom": "0x" + "00" * 256,
        "logs": [],
    }


def _liar_naming(net: FakeNet, number: int) -> Any:
    def hook(method: str, params: Any, answer: Any) -> Any:
        if method == "eth_getTransactionReceipt" and answer is None:
            return _receipt_in(net, number, bytes.fromhex(params[0][2:]))
        return answer

    return hook


@pytest.mark.parametrize("liar_index", [0, 2])
def test_a_receipt_naming_an_agreed_block_without_the_tx_changes_nothing(
    store: Store, liar_index: int
) -> None:
    net = FakeNet()
    eps = [FakeEndpoint(f"rpc#{i}", net) for i in range(3)]
    sender = make(store, net, endpoints=eps, rebroadcast_interval_s=1.0)
    (mid,) = enqueue(sender, 1)
    sender.step(T0)
    (tx,) = store.pending_transactions()
    net.pool.clear()  # the pool drops it
    net.mine(3)  # real, agreed, final blocks -- none holds our tx
    liar = eps[liar_index].label
    eps[liar_index].hook = _liar_naming(net, 1)
    sent = len(net.sent)
    sender.step(T0 + 2)
    assert store.message(mid).state is State.BROADCAST  # not included, not final
    assert len(net.sent) == sent + 1  # the rebroadcast goes on: the pool has it again
    problems = " ".join(f"{k}: {v}" for k, v in sender.problems.items())
    assert liar in problems and "do not include it" in problems
    assert [e for e in ("rpc#0", "rpc#1", "rpc#2") if e in problems] == [liar]
    assert sender.status(T0 + 2)["healthy"] is False
    net.mine()  # the re-sent transaction lands
    now = run(sender, net, T0 + 3, rounds=5)
    sender.step(now)
    final = store.transaction(tx.id)
    assert final.state is State.FINAL and final.included is not None
    assert final.included.hash == net.blocks[final.included.number].hash
    assert posts_on_chain(net) == [(0, -1)]


def test_a_forged_block_for_the_liars_receipt_fails_proof_and_is_named(store: Store) -> None:
    net = FakeNet()
    eps = [FakeEndpoint(f"rpc#{i}", net) for i in range(3)]
    sender = make(store, net, endpoints=eps, rebroadcast_interval_s=1.0)
    (mid,) = enqueue(sender, 1)
    sender.step(T0)
    (ours,) = net.pool.values()
    net.pool.clear()
    net.mine(3)
    honest = block_json(net.blocks[1], True)

    def liar(method: str, params: Any, answer: Any) -> Any:
        if method == "eth_getTransactionReceipt" and answer is None:
            return _receipt_in(net, 1, bytes.fromhex(params[0][2:]))
        if method == "eth_getBlockByNumber" and params == [hex(1), True]:
            # the agreed hash, with our transaction slipped into the body
            return {**honest, "transactions": [tx_json(ours)]}
        return answer

    eps[0].hook = liar  # asked first for the block
    sender.step(T0 + 2)
    assert store.message(mid).state is State.BROADCAST
    assert "failed proof" in sender.problems["proof rpc#0"]
    assert not any(
        k.startswith("proof rpc#1") or k.startswith("proof rpc#2") for k in sender.problems
    )


def test_a_lying_status_in_block_receipts_fails_proof(store: Store) -> None:
    net = FakeNet()
    eps = [FakeEndpoint(f"rpc#{i}", net) for i in range(3)]

    def liar(method: str, params: Any, answer: Any) -> Any:
        if method == "eth_getBlockReceipts" and answer:
            return [{**r, "status": "0x0"} for r in answer]
        return answer

    eps[0].hook = liar
    sender = make(store, net, endpoints=eps)
    (mid,) = enqueue(sender, 1)
    now = run(sender, net, T0, rounds=6)
    sender.step(now)
    m = store.message(mid)
    assert m.state is State.FINAL and store.transaction(m.tx_id or 0).nonce == 0
    assert "receiptsRoot" in sender.problems["proof rpc#0"]
    assert [k for k in sender.problems if k.startswith("proof")] == ["proof rpc#0"]
    assert posts_on_chain(net) == [(0, -1)]


def test_nonce_too_low_with_unproven_receipts_does_not_mark_included(store: Store) -> None:
    net = FakeNet()
    eps = [FakeEndpoint(f"rpc#{i}", net) for i in range(3)]
    sender = make(store, net, endpoints=eps, rebroadcast_interval_s=1.0)
    (mid,) = enqueue(sender, 1)
    sender.step(T0)
    (ours,) = net.pool.values()
    foreign = sign_transaction(
        DynamicFeeTx(
            chain_id=CHAIN_ID,
            nonce=0,
            max_priority_fee_per_gas=GWEI,
            max_fee_per_gas=5 * GWEI,
            gas=21_000,
            to=OTHER.address,
        ),
        KEY,
    )
    net.mine_foreign(foreign)  # the nonce is used by a tx that is not ours
    for ep in eps[:2]:  # even two of three claim ours is in that (agreed) block
        ep.hook = _liar_naming(net, net.head)
    now = T0 + 1
    for _ in range(4):
        sender.step(now)  # tracking and the "nonce too low" resolution both refuse
        assert store.message(mid).state in (State.SIGNED, State.BROADCAST)
        now += 1
    assert {"proof rpc#0", "proof rpc#1"} <= set(sender.problems)
    for ep in eps[:2]:
        ep.hook = None
    net.mine(3)  # the foreign tx is final: our nonce is consumed, the message re-signed
    now = run(sender, net, now, rounds=6)
    m = store.message(mid)
    assert m.state in (State.INCLUDED, State.FINAL)
    assert store.transaction(m.tx_id or 0).nonce == 1
    assert ours.hash not in {t.hash for t in net.in_chain()}
    assert posts_on_chain(net) == [(0, -1)]


def test_a_repeated_lie_is_proven_false_once_and_still_named(store: Store) -> None:
    net = FakeNet()
    eps = [FakeEndpoint(f"rpc#{i}", net) for i in range(3)]
    sender = make(store, net, endpoints=eps, rebroadcast_interval_s=1.0)
    (mid,) = enqueue(sender, 1)
    sender.step(T0)
    net.pool.clear()
    net.mine(3)
    full_fetches: list[str] = []
    lie = _liar_naming(net, 1)

    def counting(label: str) -> Any:
        def hook(method: str, params: Any, answer: Any) -> Any:
            if method == "eth_getBlockByNumber" and params[1] is True:
                full_fetches.append(label)
            return lie(method, params, answer) if label == "rpc#2" else answer

        return hook

    for ep in eps:
        ep.hook = counting(ep.label)
    for i in range(5):
        sender.step(T0 + 2 + i)
        assert "proof rpc#2" in sender.problems
    assert len(full_fetches) == 1  # block 1 proven once; the lie then known false
    assert store.message(mid).state is State.BROADCAST


def test_an_endpoint_whose_block_failed_proof_is_asked_last(store: Store) -> None:
    net = FakeNet()
    eps = [FakeEndpoint(f"rpc#{i}", net) for i in range(3)]
    asked: list[str] = []

    def forger(method: str, params: Any, answer: Any) -> Any:
        if method == "eth_getBlockByNumber" and params[1] is True and answer:
            asked.append(params[0])
            return {**answer, "gasUsed": "0x1"}  # a header field forged: fails proof
        return answer

    eps[0].hook = forger
    sender = make(store, net, endpoints=eps)
    for i in range(4):  # a new block to prove in each round
        enqueue(sender, 1, channel=f"c{i}")
        sender.step(T0 + i)
        net.mine()
    sender.step(T0 + 9)
    assert store.counts_by_state()[State.INCLUDED] + store.counts_by_state()[State.FINAL] == 4
    assert "failed proof" in sender.problems["proof rpc#0"]
    assert len(asked) == 1  # asked first once; afterwards the others are asked first


def test_a_silent_endpoint_does_not_stall_tracking(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sender_track, "RECEIPTS_ROUND_S", 0.2)
    net = FakeNet()
    gate, answered = threading.Event(), threading.Event()

    def silent(method: str, params: Any, answer: Any) -> Any:
        if method == "eth_getTransactionReceipt":
            gate.wait(timeout=30)  # holds its answer until the test ends
            answered.set()
        return answer

    eps = [FakeEndpoint("rpc#0", net, hook=silent), FakeEndpoint("rpc#1", net)]
    eps.append(FakeEndpoint("rpc#2", net))
    sender = make(store, net, endpoints=eps)
    try:
        (mid,) = enqueue(sender, 1)
        sender.step(T0)
        net.mine()
        sender.step(T0 + 1)
        assert store.message(mid).state is State.INCLUDED
        assert not answered.is_set()  # the step went on without the silent endpoint
    finally:
        gate.set()


def test_one_endpoint_claiming_finality_early_does_not_finalize(store: Store) -> None:
    net = FakeNet()

    def early(method: str, params: Any, answer: Any) -> Any:
        if method == "eth_getBlockByNumber" and params[0] == "finalized":
            return block_json(net.blocks[net.head])  # "everything is final"
        return answer

    eps = [FakeEndpoint("rpc#0", net, hook=early), FakeEndpoint("rpc#1", net)]
    eps.append(FakeEndpoint("rpc#2", net))
    sender = make(store, net, endpoints=eps)
    (mid,) = enqueue(sender, 1)
    now = run(sender, net, T0, rounds=2)  # included; the honest finalized is behind it
    assert store.message(mid).state is State.INCLUDED
    sender.step(now)
    assert store.message(mid).state is State.INCLUDED  # the liar alone finalizes nothing
    net.mine(2)
    sender.step(now + 1)
    assert store.message(mid).state is State.FINAL
