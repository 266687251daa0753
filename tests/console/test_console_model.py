"""The console's model, without a socket: fleet, readings, integrity events, commands, cost,
the change log, and every bound that keeps its memory flat."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lightpost.core.gas import gas_used
from lightpost_agent.command import (
    COMMANDS_CHANNEL,
    RESULTS_CHANNEL,
    Command,
    CommandResult,
    Target,
    encode_command,
    encode_result,
)
from lightpost_operator import console_model as cm
from lightpost_operator.console_model import DeviceInfo, Model, event_title, numeric_fields

METER = "0x" + "11" * 20
VALVE = "0x" + "22" * 20
CONTROLLER = "0x" + "33" * 20
URL = "http://127.0.0.1:9999/secret-api-key"


def message(
    seq: int,
    level: str = "included",
    *,
    sender: str = METER,
    tx: str | None = None,
    channel: str = "district-1",
    payload: str | None = None,
    hexpayload: bytes | None = None,
    block_timestamp: int | None = None,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "message",
        "sender": sender,
        "channel": channel,
        "seq": seq,
        "timestamp": 1_000_000 + seq * 1000,
        "content_type": "json",
        "payload": payload if payload is not None else json.dumps({"n": seq, "kWh": 10.0 + seq}),
        "payload_encoding": "utf-8",
        "tx_hash": tx or "0x" + f"{seq:064x}",
        "block_number": 100 + seq,
        "block_hash": "0x" + f"{seq + 7:064x}",
        "block_timestamp": 1000 + seq if block_timestamp is None else block_timestamp,
        "level": level,
        "recipient": None,
    }
    if hexpayload is not None:
        obj.update(payload="0x" + hexpayload.hex(), payload_encoding="hex", content_type="command")
    return obj


def forged(tx: str = "0x" + "fa" * 32, label: str = "rpc#2") -> dict[str, Any]:
    return {
        "type": "problem",
        "problem": "proof-failure",
        "details": f"log data does not match the proven receipt ({URL})",
        "endpoints": [label],
        "tx_hash": tx,
        "sender": METER,
        "channel": "district-1",
    }


def model() -> Model:
    return Model(
        [
            DeviceInfo(address=METER, name="meter-1", role="meter"),
            DeviceInfo(address=VALVE, name="valve-1", role="valve", min_level="final"),
        ],
        controller=CONTROLLER,
        endpoints=["rpc#0", "rpc#1", "rpc#2"],
        secrets=[URL],
    )


def fleet(m: Model, address: str = METER) -> dict[str, Any]:
    return next(d for d in m.snapshot(0.0)["fleet"] if d["address"] == address)


def test_fleet_row_follows_the_highest_level_and_the_last_reading() -> None:
    m = model()
    assert fleet(m)["highest"] is None and fleet(m)["last_seen"] is None
    m.on_item(message(1, "included"), 10.0)
    m.on_item(message(1, "final"), 12.0)
    m.on_item(message(2, "included"), 13.0)
    row = fleet(m)
    assert row["highest"] == "final"
    assert row["last_seen"] == 13.0
    assert row["messages"] == 2
    assert '"kWh": 12.0' in row["last_reading"]
    m.on_item(message(1, "complete"), 14.0)
    assert fleet(m)["highest"] == "complete"


def test_a_point_climbs_the_levels_in_place() -> None:
    m = model()
    for level in ("included", "final", "complete"):
        m.on_item(message(5, level), 1.0)
    m.on_item(message(5, "final"), 2.0)  # a lower level later never lowers the point
    series = m.snapshot(0.0)["series"]
    assert [s["s"] for s in series] == [f"district-1|{METER}|kWh"]
    assert [(p["k"], p["v"], p["lvl"]) for p in series[0]["points"]] == [
        (f"{METER}:district-1:5", 15.0, "complete")
    ]


def test_numeric_fields_skip_counters_names_and_non_objects() -> None:
    assert numeric_fields('{"id":"m","n":3,"kWh":1.5,"V":230,"ok":true}') == {
        "kWh": 1.5,
        "V": 230.0,
    }
    assert numeric_fields("[1,2]") == {} and numeric_fields("not json") == {}
    many = json.dumps({f"f{i}": i for i in range(10)})
    assert len(numeric_fields(many)) == cm.MAX_FIELDS


def test_non_numeric_payload_is_charted_by_its_size() -> None:
    m = model()
    m.on_item(message(1, payload='{"camera":"c","event":"motion"}'), 1.0)
    assert m.snapshot(0.0)["series"][0]["s"].endswith("|bytes")


def test_forged_data_is_an_event_naming_the_lying_endpoint_counted_once_per_event() -> None:
    m = model()
    m.on_item(forged(), 5.0)
    m.on_item(forged(), 6.0)  # the same lie reported again by the next poll
    m.on_item(forged(tx="0x" + "fb" * 32), 7.0)
    snap = m.snapshot(8.0)
    first = snap["events"][0]
    assert first["title"] == "forged data blocked: rpc#2 lied"
    assert first["tx_hash"] == "0x" + "fb" * 32  # newest first
    assert [e["count"] for e in snap["events"]] == [1, 2]
    assert snap["counts"] == {"rpc#2": {"proof-failure": 2}}
    assert URL not in json.dumps(snap) and "[redacted]" in snap["events"][1]["details"]


def test_event_titles_name_who_lied_or_hid() -> None:
    assert event_title("hidden", ["rpc#1"]) == "hidden message detected: rpc#1 hid it"
    assert event_title("disagreement", ["rpc#0", "rpc#2"]) == "endpoints disagree (rpc#0, rpc#2)"
    assert event_title("gap", []) == "gap in a sequence"


def test_a_retraction_marks_the_point_and_the_trail() -> None:
    m = model()
    m.on_item(message(3), 1.0)
    m.on_item(
        {
            "type": "problem",
            "problem": "retracted",
            "details": "reorg",
            "sender": METER,
            "channel": "district-1",
            "seq": 3,
            "tx_hash": "0x" + f"{3:064x}",
        },
        2.0,
    )
    point = m.snapshot(0.0)["series"][0]["points"][0]
    assert point.get("r") is True
    trail = m.proof(f"{METER}:district-1:3")
    assert trail is not None and trail["retracted"] is True
    assert trail["events"][0]["title"] == "delivery retracted (reorg)"
    m.on_item(message(3, "final"), 3.0)  # re-delivered after the reorg
    assert "r" not in m.snapshot(0.0)["series"][0]["points"][0]


def test_proof_trail_has_tx_block_levels_and_the_events_about_its_tx() -> None:
    m = model()
    m.on_item(message(4, "included"), 10.0)
    m.on_item(message(4, "final"), 20.0)
    m.on_item(forged(tx="0x" + f"{4:064x}"), 21.0)
    trail = m.proof(f"{METER}:district-1:4")
    assert trail is not None
    assert trail["tx_hash"] == "0x" + f"{4:064x}" and trail["block_number"] == 104
    assert trail["levels"] == [{"level": "included", "at": 10.0}, {"level": "final", "at": 20.0}]
    assert trail["events"] == [
        {"title": "forged data blocked: rpc#2 lied", "endpoints": ["rpc#2"], "count": 1}
    ]
    assert m.proof("nope") is None


def test_a_message_first_seen_complete_has_reached_included_and_final_too() -> None:
    """Each level is its own poll: a block that becomes final between a round's `final` and
    `complete` polls is delivered complete first; the trail must still say final (the ladder is
    cumulative), and the message counts once."""
    m = model()
    m.on_item(message(5, "complete"), 30.0)
    m.on_item(message(5, "final"), 31.0)
    trail = m.proof(f"{METER}:district-1:5")
    assert trail is not None
    assert trail["levels"] == [
        {"level": "included", "at": 30.0},
        {"level": "final", "at": 30.0},
        {"level": "complete", "at": 30.0},
    ]
    assert m.devices[METER].messages == 1


def test_commands_join_their_signed_result_and_a_refusal_is_an_event() -> None:
    m = model()
    command = Command(
        name="set",
        args=(("valve", "60"),),
        target=Target(address=bytes.fromhex(VALVE[2:])),
        command_seq=7,
        not_before=0,
        expiry=10,
    )
    m.on_item(
        message(
            1,
            "final",
            sender=CONTROLLER,
            channel=COMMANDS_CHANNEL,
            hexpayload=encode_command(command),
        ),
        1.0,
    )
    result = CommandResult(
        controller=bytes.fromhex(CONTROLLER[2:]), command_seq=7, status="refused", reason="expired"
    )
    m.on_item(
        message(
            1, "final", sender=VALVE, channel=RESULTS_CHANNEL, hexpayload=encode_result(result)
        ),
        2.0,
    )
    snap = m.snapshot(3.0)
    (row,) = snap["commands"]
    assert row["command"] == "set valve=60" and row["target"] == "valve-1"
    assert row["device_level"] == "final" and "final" in row["levels"]
    assert row["result"]["status"] == "refused" and row["result"]["from"] == "valve-1"
    assert snap["events"][0]["kind"] == "command-refused"
    # commands and results are not readings: no chart, and the fleet keeps the last reading
    assert snap["series"] == [] and fleet(m, VALVE)["last_reading"] == ""


def test_cost_splits_gas_over_the_messages_of_a_tx_against_one_tx_per_reading() -> None:
    m = model()
    tx = "0x" + "ab" * 32
    m.on_item(message(1, tx=tx, block_timestamp=100), 500.0)
    m.on_item(message(2, tx=tx, block_timestamp=100), 500.0)
    m.on_item(message(3, tx="0x" + "cd" * 32, block_timestamp=160), 500.0)  # a catch-up
    m.on_gas(tx, 40_000)
    m.on_gas("0x" + "cd" * 32, 30_000)
    m.on_base_fee(10**9)
    kinds = lambda: [json.loads(line)["kind"] for _, line in m.changes]  # noqa: E731
    assert "cost" not in kinds()  # computed once per follower round, not per transaction
    m.tick(500.0)
    m.tick(501.0)
    assert kinds().count("cost") == 1
    cost = m.cost()
    paper = sum(gas_used(json.dumps({"n": s, "kWh": 10.0 + s}).encode()) for s in (1, 2, 3))
    assert cost["total_gas"] == 70_000 and cost["readings"] == 3
    assert cost["per_reading"] == round(70_000 / 3)
    assert cost["paper_per_reading"] == round(paper / 3)
    (row,) = cost["devices"]
    assert (row["name"], row["txs"], row["messages"]) == ("meter-1", 2, 3)
    assert cost["window_s"] == 60.0
    day = 70_000 / 60 * cm.DAY_S
    assert cost["projection"] == {
        "gas_per_day": round(day),
        "wei_per_day": round(day * 10**9),
        "wei_per_month": round(day * 10**9 * cm.MONTH_DAYS),
    }
    assert m.unknown_gas() == []


def post(seqs: list[int], tx: str, block_timestamp: int, sender: str = METER) -> dict[str, Any]:
    """A proven post as the follower gives it (console_follow.post_json)."""
    return {
        "type": "post",
        "sender": sender,
        "channel": "district-1",
        "seqs": seqs,
        "tx_hash": tx,
        "block_timestamp": block_timestamp,
    }


def test_a_chunked_message_costs_every_chunks_transaction() -> None:
    """A camera digest chunked over three transactions: each chunk's transaction is asked for
    its gas and counted, the digest is one reading (paper cost once), and its cadence is one
    arrival per delivery, not per chunk."""
    m = model()
    chunks = ["0x" + f"{i:02x}" * 32 for i in (0xC1, 0xC2, 0xC3)]
    digest = json.dumps({"frames": ["ab" * 32] * 40})
    for i, tx in enumerate(chunks):
        m.on_item(post([7], tx, 100 + i), 500.0)
    m.on_item(message(7, tx=chunks[2], payload=digest, block_timestamp=102), 500.0)
    assert m.unknown_gas() == chunks
    for tx in chunks:
        m.on_gas(tx, 30_000)
    cost = m.cost()
    assert cost["total_gas"] == 90_000 and cost["readings"] == 1
    assert cost["per_reading"] == 90_000
    assert cost["paper_per_reading"] == gas_used(digest.encode())
    (row,) = cost["devices"]
    assert (row["txs"], row["messages"], row["per_message"]) == (3, 1, 90_000)
    assert list(m.devices[METER].arrivals) == [102]


def test_a_reading_waits_for_the_gas_of_all_its_chunks() -> None:
    m = model()
    m.on_item(post([3], "0x" + "c1" * 32, 100), 500.0)
    m.on_item(message(3, tx="0x" + "c2" * 32, block_timestamp=101), 500.0)
    m.on_gas("0x" + "c2" * 32, 30_000)
    assert m.cost()["readings"] == 0 and m.unknown_gas() == ["0x" + "c1" * 32]
    m.on_gas("0x" + "c1" * 32, 20_000)
    assert m.cost()["readings"] == 1 and m.cost()["per_reading"] == 50_000


def test_the_paper_cost_covers_every_message_in_the_window_not_only_kept_proof_trails() -> None:
    """More messages in the cost window than proof trails kept (cm.MAX_MESSAGES): the paper's
    figures still count each of them (measured on the demo: the old figures were ~15% low)."""
    m = model()
    batches, per_tx = 400, 5
    assert batches * per_tx > cm.MAX_MESSAGES and batches <= cm.MAX_TXS
    paper = 0
    for b in range(batches):
        tx = "0x" + f"{b + 1:064x}"
        for i in range(per_tx):
            seq = b * per_tx + i + 1
            m.on_item(message(seq, tx=tx, block_timestamp=1000 + b), 500.0)
            paper += gas_used(json.dumps({"n": seq, "kWh": 10.0 + seq}).encode())
        m.on_gas(tx, 50_000)
    m.on_base_fee(1)
    cost = m.cost()
    (row,) = cost["devices"]
    assert row["messages"] == batches * per_tx
    assert row["paper_per_message"] == round(paper / (batches * per_tx))
    day = paper / (batches - 1) * cm.DAY_S
    assert cost["paper_projection"]["gas_per_day"] == round(day)


def test_a_device_falls_silent_past_its_cadence() -> None:
    m = model()
    for i, t in enumerate((0, 10, 20, 30)):
        m.on_item(message(i + 1, block_timestamp=t), float(t))
    assert fleet(m)["cadence_s"] == 10.0
    m.tick(30.0 + cm.MIN_SILENCE_S - 1)
    assert not fleet(m)["silent"]
    m.tick(30.0 + cm.MIN_SILENCE_S + 1)
    assert fleet(m)["silent"]
    m.on_item(message(9), 100.0)
    assert not fleet(m)["silent"]


def test_balance_and_outbox_backlog() -> None:
    m = model()
    m.on_balance(METER, 5 * 10**18, 1.0)
    m.on_outbox(METER, {"queued": 3, "final": 99, "included": 0}, 1.0)
    row = fleet(m)
    assert row["balance_wei"] == 5 * 10**18 and row["outbox"] == {"queued": 3}


def test_change_log_streams_changes_and_asks_a_lagging_reader_to_reload() -> None:
    m = model()
    start = m.version
    m.on_item(message(1), 1.0)
    m.on_item(message(1, "final"), 1.0)
    m.tick(1.0)
    changes, reset = m.changes_since(start)
    kinds = [json.loads(line)["kind"] for _, line in changes]
    assert not reset and kinds == ["point", "point", "device"]  # one fleet row per round
    assert m.changes_since(m.version) == ([], False)
    for i in range(cm.MAX_CHANGES):
        m.on_balance(METER, i + 1, 1.0)
    assert m.changes_since(start) == ([], True)


@pytest.mark.parametrize("rounds", [3])
def test_memory_is_bounded_however_long_it_runs(rounds: int) -> None:
    m = model()
    n = 0
    for _ in range(rounds):
        for _ in range(cm.MAX_MESSAGES):
            n += 1
            m.on_item(message(n, sender="0x" + f"{n % 600:040x}"), float(n))
            m.on_item(forged(tx="0x" + f"{n:064x}"), float(n))
            m.on_gas("0x" + f"{n:064x}", 21_000)
    assert len(m.messages) <= cm.MAX_MESSAGES
    assert len(m.devices) <= cm.MAX_DEVICES
    assert len(m.series) <= cm.MAX_SERIES
    assert all(len(p) <= cm.MAX_POINTS for p in m.series.values())
    assert len(m.events) <= cm.MAX_EVENTS
    assert len(m.changes) <= cm.MAX_CHANGES
    assert len(m.tx_gas) <= cm.MAX_TXS and len(m.tx_messages) <= cm.MAX_TXS
    assert len(m.paper) <= cm.MAX_PAPER and len(m.tx_arrived) <= cm.MAX_TXS
    assert sum(len(c) for c in m.counts.values()) == 1  # one endpoint, one kind


def test_follower_status_never_carries_an_endpoint_url() -> None:
    m = model()
    m.on_status(follower=f"rpc#0: connection refused ({URL})")
    assert URL not in json.dumps(m.snapshot(0.0)) and URL not in "".join(
        line for _, line in m.changes
    )
