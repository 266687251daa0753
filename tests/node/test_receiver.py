"""The receiver runtime against scripted endpoints (no sockets).

The endpoints serve one consistent block (tests.core.test_verify.Block: two inbox
posts by KEY, real receipts, headers and an EIP-1186 proof) and can be scripted to
fail or lie per method.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from lightpost.adapters.rpc import MAX_LOGS_ANSWER_BYTES, MAX_PROOF_ANSWER_BYTES
from lightpost.core.envelope import channel_id
from lightpost.core.inbox import accumulator_slots
from lightpost.core.levels import Delivered, Level
from lightpost.core.verify import Problem
from lightpost.errors import AnswerTooLarge, ConfigError, EndpointUnavailable
from lightpost.node import receiver_complete
from lightpost.node.config import ChannelPolicy, DeviceConfig
from lightpost.node.receiver import Receiver
from lightpost.node.receiver_complete import PROOF_STREAMS_PER_CALL, STORAGE_PROOF_NODES
from tests.core.test_verify import CHAIN_ID, INBOX, KEY, OTHER, Block, receipt_json

Hook = Callable[[str, Sequence[Any], Any], Any]


class ScriptedEndpoint:
    """Answers from ``block``; ``hook(method, params, answer)`` may rewrite or raise."""

    def __init__(self, label: str, block: Block, hook: Hook | None = None) -> None:
        self.label = label
        self.block = block
        self.hook = hook
        self.calls: list[str] = []

    def _answer(self, method: str, params: Sequence[Any]) -> Any:
        b = self.block
        number = b.header.number
        if method == "eth_getBlockByNumber":
            tag = params[0]
            if tag not in ("latest", "finalized", "safe", hex(number)):
                return None
            obj = copy.deepcopy(b.json)
            if not params[1]:
                obj["transactions"] = [t["hash"] for t in obj["transactions"]]
            return obj
        if method == "eth_getLogs":
            return [log for log in self._logs() if _matches(log, params[0])]
        if method == "eth_getBlockReceipts":
            return [receipt_json(r) for r in b.receipts]
        if method == "eth_getProof":
            return b.proof([int(k, 16) for k in params[1]])
        raise EndpointUnavailable(self.label, f"unscripted {method}")

    def _logs(self) -> list[dict[str, Any]]:
        b = self.block
        number = b.header.number
        out = []
        for log_index, (tx_index, log) in enumerate(((0, b.logs[0]), (2, b.logs[1]))):
            out.append(
                {
                    "address": "0x" + log.address.hex(),
                    "topics": ["0x" + t.hex() for t in log.topics],
                    "data": "0x" + log.data.hex(),
                    "blockNumber": hex(number),
                    "blockHash": b.json["hash"],
                    "transactionIndex": hex(tx_index),
                    "transactionHash": "0x" + b.txs[tx_index].hash.hex(),
                    "logIndex": hex(log_index),
                    "removed": False,
                }
            )
        return out

    def call(self, method: str, params: Sequence[Any]) -> Any:
        self.calls.append(method)
        answer = self._answer(method, params)
        return self.hook(method, params, answer) if self.hook else answer

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        return [self.call(m, p) for m, p in calls]


def _matches(log: dict[str, Any], flt: dict[str, Any]) -> bool:
    """An honest node's eth_getLogs filter: range, address, topic OR-lists."""
    number = int(log["blockNumber"], 16)
    if not int(flt["fromBlock"], 16) <= number <= int(flt["toBlock"], 16):
        return False
    if log["address"] != flt["address"].lower():
        return False
    for want, have in zip(flt["topics"], log["topics"], strict=False):
        options = [want] if isinstance(want, str) else want
        if want is not None and have not in [o.lower() for o in options]:
            return False
    return True


@pytest.fixture(scope="module")
def block() -> Block:
    return Block()


def _config(
    tmp: Path,
    *,
    trusted: tuple[bytes, ...] = (KEY.address,),
    mode: str = "channel",
    quorum: int = 2,
) -> DeviceConfig:
    return DeviceConfig(
        path=tmp / "c.toml",
        chain_id=CHAIN_ID,
        endpoints=("http://127.0.0.1:1",) * 3,
        quorum=quorum,
        keystore=tmp / "none.json",
        password_file=None,
        data_dir=tmp / "data",
        mode=mode,
        inbox=INBOX,
        channels=(ChannelPolicy("c1", trusted),),
    )


def _run(
    tmp: Path, block: Block, hooks: list[Hook | None], level: Level = Level.COMPLETE, **kw: Any
) -> tuple[list[Delivered], list[Problem]]:
    eps = [ScriptedEndpoint(f"rpc#{i}", block, h) for i, h in enumerate(hooks)]
    with Receiver(_config(tmp, **kw), endpoints=eps, me=OTHER.address) as receiver:
        out = list(receiver.poll(level))
    return (
        [o for o in out if isinstance(o, Delivered)],
        [o for o in out if isinstance(o, Problem)],
    )


def test_honest_endpoints(block: Block, tmp_path: Path) -> None:
    delivered, problems = _run(tmp_path, block, [None, None, None])
    assert [(d.seq, d.payload) for d in delivered] == [(0, b"hello"), (1, b"world")]
    assert problems == []
    assert delivered[0].block_timestamp == block.header.timestamp


def test_a_hiding_endpoint_is_named(block: Block, tmp_path: Path) -> None:
    def hide(method: str, params: Sequence[Any], answer: Any) -> Any:
        return answer[:1] if method == "eth_getLogs" else answer

    delivered, problems = _run(tmp_path, block, [hide, None, None])
    assert len(delivered) == 2
    assert [(p.kind, p.endpoints) for p in problems] == [("hidden", ("rpc#0",))]


def test_everyone_hiding_is_caught_by_completeness(block: Block, tmp_path: Path) -> None:
    def hide(method: str, params: Sequence[Any], answer: Any) -> Any:
        return answer[:1] if method == "eth_getLogs" else answer

    delivered, problems = _run(tmp_path, block, [hide, hide, hide])
    # The block of the first post is fetched, so its proven receipts reveal the second.
    assert len(delivered) == 2
    assert {p.kind for p in problems} == {"hidden"}
    delivered, problems = _run(
        tmp_path / "2", block, [lambda m, p, a: [] if m == "eth_getLogs" else a] * 3
    )
    assert delivered == []
    assert [(p.kind, p.missing) for p in problems] == [("hidden", 2)]


def test_no_quorum_on_logs_is_a_refusal(block: Block, tmp_path: Path) -> None:
    def down(method: str, params: Sequence[Any], answer: Any) -> Any:
        if method == "eth_getLogs":
            raise EndpointUnavailable("x", "down")
        return answer

    delivered, problems = _run(tmp_path, block, [down, down, None])
    assert delivered == []
    assert [p.kind for p in problems] == ["disagreement"]


def test_disagreeing_block_hashes_are_a_refusal(block: Block, tmp_path: Path) -> None:
    def liar(n: int) -> Hook:
        def hook(method: str, params: Sequence[Any], answer: Any) -> Any:
            if method == "eth_getBlockByNumber" and answer:
                answer["hash"] = "0x" + f"{n:02x}" * 32
            return answer

        return hook

    delivered, problems = _run(tmp_path, block, [liar(1), liar(2), None])
    assert delivered == []
    # Each liar's header does not hash to the hash it claims (evidence: named), and
    # without a quorum the poll refuses.
    assert [(p.kind, p.endpoints) for p in problems] == [
        ("proof-failure", ("rpc#0",)),
        ("proof-failure", ("rpc#1",)),
        ("disagreement", ("rpc#2",)),  # the only answer: no quorum, no blame
    ]


def test_untrusted_sender_costs_no_block_fetch(block: Block, tmp_path: Path) -> None:
    """Finding 6: posts by a sender not trusted on the channel are never delivered and
    cost no block fetch -- even from an endpoint that ignores the topic filter (its
    answer is outside the question: reported against it alone)."""
    eps = [ScriptedEndpoint(f"rpc#{i}", block) for i in range(3)]
    eps[0].hook = lambda m, p, a: eps[0]._logs() if m == "eth_getLogs" else a
    config = _config(tmp_path, trusted=(OTHER.address,))
    with Receiver(config, endpoints=eps, me=OTHER.address) as receiver:
        out = list(receiver.poll(Level.FINAL))
    assert [o for o in out if isinstance(o, Delivered)] == []
    problems = [o for o in out if isinstance(o, Problem)]
    assert {(p.kind, p.endpoints) for p in problems} == {("proof-failure", ("rpc#0",))}
    assert all("not asked for" in p.details for p in problems)
    for ep in eps:
        assert "eth_getBlockReceipts" not in ep.calls
        assert ep.calls.count("eth_getBlockByNumber") <= 2  # heads only, no block


def test_state_survives_a_restart(block: Block, tmp_path: Path) -> None:
    assert len(_run(tmp_path, block, [None, None, None])[0]) == 2
    assert _run(tmp_path, block, [None, None, None]) == ([], [])


def test_config_errors(block: Block, tmp_path: Path) -> None:
    eps = [ScriptedEndpoint("rpc#0", block)]
    config = _config(tmp_path, quorum=1)
    with (
        Receiver(config, endpoints=eps, me=OTHER.address) as r,
        pytest.raises(ConfigError, match="not in the config"),
    ):
        list(r.poll(Level.FINAL, channel="nope"))
    with (
        Receiver(
            _config(tmp_path / "d", quorum=1, mode="direct"), endpoints=eps, me=OTHER.address
        ) as r,
        pytest.raises(ConfigError, match="channel mode"),
    ):
        list(r.poll(Level.COMPLETE))


def test_complete_proves_every_stream_with_one_eth_get_proof(block: Block, tmp_path: Path) -> None:
    """Receiver scale: two followed streams (KEY with two posts, OTHER with none) are
    proven together -- one eth_getProof answer with all four storage keys."""
    eps = [ScriptedEndpoint(f"rpc#{i}", block) for i in range(3)]
    config = _config(tmp_path, trusted=(KEY.address, OTHER.address))
    with Receiver(config, endpoints=eps, me=OTHER.address) as receiver:
        out = list(receiver.poll(Level.COMPLETE))
    assert [(o.seq, o.payload) for o in out if isinstance(o, Delivered)] == [
        (0, b"hello"),
        (1, b"world"),
    ]
    assert [o for o in out if isinstance(o, Problem)] == []
    assert sum(ep.calls.count("eth_getProof") for ep in eps) == 1


@pytest.mark.parametrize("level", [Level.FINAL, Level.COMPLETE])
def test_a_block_final_only_by_the_majority_is_never_silent(
    block: Block, tmp_path: Path, level: Level
) -> None:
    """Two endpoints call the posts' block N finalized, one says N - 1 (an honest lag or a
    lying majority look the same): the quorum's height is used -- the posts are delivered
    -- but never silently: one disagreement names both sides, before the deliveries."""
    n = block.header.number

    def behind(method: str, params: Sequence[Any], answer: Any) -> Any:
        if method == "eth_getBlockByNumber" and params[0] == "finalized":
            answer = dict(answer, number=hex(n - 1))
        return answer

    eps = [ScriptedEndpoint(f"rpc#{i}", block, h) for i, h in enumerate([None, None, behind])]
    with Receiver(_config(tmp_path), endpoints=eps, me=OTHER.address) as receiver:
        out = list(receiver.poll(level))
    assert [type(o).__name__ for o in out] == ["Problem", "Delivered", "Delivered"]
    problem = out[0]
    assert isinstance(problem, Problem) and problem.kind == "disagreement"
    assert problem.endpoints == ("rpc#0", "rpc#1", "rpc#2")
    assert f"rpc#2 says {n - 1}" in problem.details


def _too_large_above(blocks: int, label: str = "rpc#0") -> Hook:
    """eth_getLogs over more than ``blocks`` blocks is over the size cap."""

    def hook(method: str, params: Sequence[Any], answer: Any) -> Any:
        if method == "eth_getLogs":
            flt = params[0]
            if int(flt["toBlock"], 16) - int(flt["fromBlock"], 16) + 1 > blocks:
                raise AnswerTooLarge(label, MAX_LOGS_ANSWER_BYTES)
        return answer

    return hook


def test_a_log_page_too_large_is_halved_down_to_single_blocks(block: Block, tmp_path: Path) -> None:
    """Issue 12, receiver scale: a page whose eth_getLogs answer is over the cap on
    every endpoint is asked again in halves (down to single blocks), so a busy catch-up
    page cannot fail forever; each half is checked against its own range."""
    eps = [ScriptedEndpoint(f"rpc#{i}", block, _too_large_above(1, f"rpc#{i}")) for i in range(3)]
    with Receiver(_config(tmp_path), endpoints=eps, me=OTHER.address) as receiver:
        out = list(receiver.poll(Level.COMPLETE))
    assert [(o.seq, o.payload) for o in out if isinstance(o, Delivered)] == [
        (0, b"hello"),
        (1, b"world"),
    ]
    assert [o for o in out if isinstance(o, Problem)] == []
    # blocks 0..2: the page, its halves 0..1 and 2..2, then 0..0 and 1..1
    assert [ep.calls.count("eth_getLogs") for ep in eps] == [5, 5, 5]


def test_a_single_block_too_large_is_that_endpoints_non_answer(
    block: Block, tmp_path: Path
) -> None:
    """An endpoint whose answer is over the cap even for one block is a non-answer for
    the page (reported as over-budget, naming it alone); the others deliver; it is asked
    only along one halving path."""
    eps = [ScriptedEndpoint(f"rpc#{i}", block) for i in range(3)]
    eps[0].hook = _too_large_above(0)
    with Receiver(_config(tmp_path), endpoints=eps, me=OTHER.address) as receiver:
        out = list(receiver.poll(Level.FINAL))
    assert len([o for o in out if isinstance(o, Delivered)]) == 2
    problems = [o for o in out if isinstance(o, Problem)]
    assert [(p.kind, p.endpoints, p.block_number) for p in problems] == [
        ("over-budget", ("rpc#0",), 0)
    ]
    assert eps[0].calls.count("eth_getLogs") == 3  # 0..2, 0..1, 0..0
    assert [ep.calls.count("eth_getLogs") for ep in eps[1:]] == [1, 1]


def test_a_halved_answer_is_checked_against_its_own_range(block: Block, tmp_path: Path) -> None:
    """A liar answering the half 0..1 with the (real) logs of block 2 is caught: the
    claim is outside the range that half asked."""
    eps = [ScriptedEndpoint(f"rpc#{i}", block) for i in range(3)]

    def liar(method: str, params: Sequence[Any], answer: Any) -> Any:
        if method == "eth_getLogs":
            flt = params[0]
            if flt["fromBlock"] != flt["toBlock"] and flt["toBlock"] != "0x1":
                raise AnswerTooLarge("rpc#0", MAX_LOGS_ANSWER_BYTES)
            return eps[0]._logs()
        return answer

    eps[0].hook = liar
    with Receiver(_config(tmp_path), endpoints=eps, me=OTHER.address) as receiver:
        out = list(receiver.poll(Level.FINAL))
    assert len([o for o in out if isinstance(o, Delivered)]) == 2
    problems = [o for o in out if isinstance(o, Problem)]
    assert problems and {(p.kind, p.endpoints) for p in problems} == {("proof-failure", ("rpc#0",))}
    assert all("outside the asked range 0..1" in p.details for p in problems)


def test_proof_streams_per_call_fit_the_cap_at_mainnet_depth() -> None:
    """Issue 12: one eth_getProof of PROOF_STREAMS_PER_CALL streams (two keys each) fits
    the answer cap even when every storage proof is STORAGE_PROOF_NODES full branch
    nodes deep (the landed 1,024 streams needed ~20 MB: AnswerTooLarge on every poll)."""
    branch = "0x" + "f9" * 532  # the largest trie node, 532 bytes
    entry = {
        "key": "0x" + "ab" * 32,
        "value": "0x" + "cd" * 32,
        "proof": [branch] * STORAGE_PROOF_NODES,
    }
    answer = {
        "jsonrpc": "2.0",
        "id": 1,
        "result": {
            "address": "0x" + "11" * 20,
            "accountProof": [branch] * STORAGE_PROOF_NODES,
            "balance": "0x0",
            "codeHash": "0x" + "22" * 32,
            "nonce": "0x1",
            "storageHash": "0x" + "33" * 32,
            "storageProof": [entry] * (2 * PROOF_STREAMS_PER_CALL),
        },
    }
    size = len(json.dumps(answer).encode())
    assert size <= MAX_PROOF_ANSWER_BYTES
    assert size >= MAX_PROOF_ANSWER_BYTES * 0.9  # and the calls are not needlessly small


def test_a_poll_without_a_new_finalized_block_proves_nothing_again(
    block: Block, tmp_path: Path
) -> None:
    """Receiver scale: a stream proven complete at the finalized block is not proven
    again by the next poll at the same block (no eth_getProof: the poll is free), and
    a stream that was not complete there still is."""
    eps = [ScriptedEndpoint(f"rpc#{i}", block) for i in range(3)]
    config = _config(tmp_path, trusted=(KEY.address, OTHER.address))
    with Receiver(config, endpoints=eps, me=OTHER.address) as receiver:
        assert len([o for o in receiver.poll(Level.COMPLETE) if isinstance(o, Delivered)]) == 2
        assert list(receiver.poll(Level.COMPLETE)) == []
    assert sum(ep.calls.count("eth_getProof") for ep in eps) == 1


def test_an_incomplete_stream_is_proven_again_at_the_same_block(
    block: Block, tmp_path: Path
) -> None:
    def hide(method: str, params: Sequence[Any], answer: Any) -> Any:
        return [] if method == "eth_getLogs" else answer

    eps = [ScriptedEndpoint(f"rpc#{i}", block, hide) for i in range(3)]
    with Receiver(_config(tmp_path), endpoints=eps, me=OTHER.address) as receiver:
        first = list(receiver.poll(Level.COMPLETE))
        second = list(receiver.poll(Level.COMPLETE))
    assert [(p.kind, p.missing) for p in first if isinstance(p, Problem)] == [("hidden", 2)]
    assert [(p.kind, p.missing) for p in second if isinstance(p, Problem)] == [("hidden", 2)]
    assert sum(ep.calls.count("eth_getProof") for ep in eps) == 2


def test_proof_calls_in_flight_fall_back_on_a_bad_answer(
    block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Streams proven one per eth_getProof, fetched ahead from the first endpoint: its
    bad answer for one chunk is reported against it alone and that chunk is proven by
    the next endpoint; everything is delivered."""
    monkeypatch.setattr(receiver_complete, "PROOF_STREAMS_PER_CALL", 1)

    others_slot = f"0x{accumulator_slots(OTHER.address, channel_id('c1'))[0]:064x}"

    def bad_second_proof(method: str, params: Sequence[Any], answer: Any) -> Any:
        if method == "eth_getProof" and params[1][0] == others_slot:  # OTHER's chunk
            answer["storageProof"][0]["value"] = "0x5"
        return answer

    eps = [ScriptedEndpoint(f"rpc#{i}", block) for i in range(3)]
    eps[0].hook = bad_second_proof
    config = _config(tmp_path, trusted=(KEY.address, OTHER.address))
    with Receiver(config, endpoints=eps, me=OTHER.address) as receiver:
        out = list(receiver.poll(Level.COMPLETE))
    assert len([o for o in out if isinstance(o, Delivered)]) == 2
    problems = [o for o in out if isinstance(o, Problem)]
    assert [(p.kind, p.endpoints) for p in problems] == [("proof-failure", ("rpc#0",))]
    assert [ep.calls.count("eth_getProof") for ep in eps] == [2, 1, 0]


def test_an_endpoint_that_is_down_for_a_proof_is_no_liar(block: Block, tmp_path: Path) -> None:
    """rpc#0 cannot be reached for the full block and its receipts: the others prove
    everything, and nobody is named -- being down is not evidence (before: a
    proof-failure naming rpc#0)."""

    def down(method: str, params: Sequence[Any], answer: Any) -> Any:
        if method == "eth_getBlockReceipts" or (
            method == "eth_getBlockByNumber" and params[1] is True
        ):
            raise EndpointUnavailable("rpc#0", "unreachable (ConnectionRefusedError)")
        return answer

    delivered, problems = _run(tmp_path, block, [down, None, None])
    assert [(d.seq, d.payload) for d in delivered] == [(0, b"hello"), (1, b"world")]
    assert problems == []
