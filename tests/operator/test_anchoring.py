"""The gateway's anchoring rules (lightpost_operator.anchoring), without a socket."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightpost.core.outbox import State
from lightpost_operator.anchoring import Action, anchor_action, anchor_nonce, outbox_path

STUCK, RESEND, RETRY = 36.0, 12.0, 1.0

#  state,          fee_held, since_signed, since_sent, action
CASES = [
    (None, False, 0.0, None, Action.SIGN),
    (None, True, 0.0, None, Action.HOLD),  # above the cap: nothing signed
    (State.SIGNED, False, 0.0, None, Action.SEND),  # stored before a crash: the same bytes
    (State.SIGNED, True, 0.0, None, Action.SEND),  # held: a signed version is still sent
    (State.SIGNED, False, 0.5, 0.5, Action.WAIT),
    (State.SIGNED, False, 2.0, 2.0, Action.SEND),  # no endpoint took it: retried
    (State.BROADCAST, False, 5.0, 5.0, Action.WAIT),
    (State.BROADCAST, False, 13.0, 13.0, Action.SEND),  # a pool may have dropped it
    (State.BROADCAST, False, 36.0, 1.0, Action.BUMP),  # stuck: same nonce, fees up
    (State.BROADCAST, True, 36.0, 1.0, Action.WAIT),  # stuck but held: kept, never dropped
    (State.BROADCAST, True, 99.0, 13.0, Action.SEND),  # held and re-sent
    (State.BROADCAST, False, 99.0, None, Action.SEND),  # first sight after a restart: send first
    (State.INCLUDED, False, 99.0, 1.0, Action.ANCHORED),
    (State.INCLUDED, True, 0.0, None, Action.ANCHORED),  # a hold never un-anchors
    (State.FINAL, False, 0.0, None, Action.ANCHORED),
]


@pytest.mark.parametrize(("state", "held", "signed", "sent", "want"), CASES)
def test_anchor_action_table(
    state: State | None, held: bool, signed: float, sent: float | None, want: Action
) -> None:
    got = anchor_action(
        state=state,
        fee_held=held,
        since_signed=signed,
        since_sent=sent,
        stuck_after_s=STUCK,
        rebroadcast_s=RESEND,
        signed_retry_s=RETRY,
    )
    assert got is want


@pytest.mark.parametrize(
    ("local", "chain", "want"),
    [(0, 0, 0), (3, 1, 3), (1, 5, 5), (7, 7, 7)],
)
def test_anchor_nonce_is_past_ours_and_past_the_mined(local: int, chain: int, want: int) -> None:
    assert anchor_nonce(local_next=local, chain_latest=chain) == want


def test_outbox_sits_beside_the_gateway_db(tmp_path: Path) -> None:
    assert outbox_path(tmp_path / "gw.sqlite") == tmp_path / "gw.sqlite.outbox"


class _Pub:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, topic: str, msg: bytes) -> None:
        self.sent.append(topic)


def test_the_gateway_waits_for_a_held_anchoring_without_blocking_or_cutting_more(
    tmp_path: Path,
) -> None:
    """An anchoring that is not mined yet (held under the fee cap, stuck, being bumped) answers
    None: the batch keeps no block, no receipt goes out, no second batch is cut; when it is
    proven the receipts go out and batching goes on. (Before, the gateway took every answer as
    mined, and chain_anchor blocked the loop.)"""
    from lightpost_gateway.record import Domain
    from lightpost_gateway.service import Anchored, Gateway, GatewayStore

    answers: list[Anchored | None] = [None, None]
    asked: list[bytes] = []

    def anchor(calldata: bytes) -> Anchored | None:
        asked.append(calldata)
        return answers.pop(0) if answers else Anchored(tx_hash=b"\x01" * 32, block=7)

    store = GatewayStore(tmp_path / "gw.sqlite")
    pub = _Pub()
    gw = Gateway(
        store=store,
        domain=Domain(chain_id=1, anchor=b"\x02" * 20),
        anchor=anchor,
        sub=None,  # type: ignore[arg-type]
        pub=pub,  # type: ignore[arg-type]
        batch_interval_s=0,
    )
    device = b"\x03" * 20
    store.put(device, 0, b"\x04" * 32, b"\x00" * 32, b"wire0", 0.0)
    assert gw.step(1.0) == 1  # cut; its anchoring answers "not yet"
    store.put(device, 1, b"\x05" * 32, b"\x04" * 32, b"wire1", 1.0)
    assert gw.step(2.0) is None  # still waiting: nothing new cut
    assert store.db.execute("SELECT block FROM batches").fetchall() == [(None,)]
    assert pub.sent == [] and len(asked) == 2 and asked[0] == asked[1]
    assert gw.step(3.0) == 2  # batch 1 proven: its receipt, then the next batch
    assert store.db.execute("SELECT id, block FROM batches ORDER BY id").fetchall() == [
        (1, 7),
        (2, 7),
    ]
    assert len(pub.sent) == 2
    store.close()
