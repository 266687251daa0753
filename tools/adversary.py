"""The randomized adversarial harness (issue 12): lying endpoints against the sender and
the receiver on a real anvil, with invariants checked every round.

Set-up: one anvil (automine), the inbox, two funded devices (a sender and a receiver),
and three endpoints to the same anvil for each of them. One endpoint (``liars=1``,
*minority*) or two (``liars=2``, *majority*, colluding: they tell the same lie to the same
question) are wrapped by :class:`LyingEndpoint`, an in-process implementation of the
``Endpoint`` protocol (``call``/``batch``) that, seeded, rewrites the honest answer of ANY
method: logs outside the asked range, hidden / forged / injected / duplicated logs,
receipts placed in another block, wrong or far-future heads and finalized heights, altered
headers, huge base fees, bad proofs, malformed shapes, errors -- and, through a real
:class:`~lightpost.adapters.rpc.HttpEndpoint` talking to a tiny local server, deeply nested
JSON, huge answers and slow-drip answers (the transport's own bounds are exercised).

A *round* is one ``Sender.step``, one ``Receiver.poll`` at one level (signed, included,
final, complete in turn), one step of the receiving device's command agent
(``AgentService.step``: its own receiver, at the agent's ``min_level = "final"``) or -- from
a third of the run on -- one poll at ``final`` of a second receiver subscribed with
``since`` = the height at that moment, with one block mined. The sender also sends
``set`` commands to the agent. Truth is the honest anvil, asked directly.

Invariants (a violation is recorded with its kind, seed and round):

- ``crash`` -- an exception escaped ``step``/``poll``;
- ``stall`` -- a round took longer than :data:`STALL_S`;
- ``forged`` -- a delivered payload is not what the sender put on chain under that seq;
- ``false-inclusion`` -- delivered at included+ with a block hash/number that is not the
  post's; ``false-finality`` -- delivered at final+ above the finalized head;
- ``duplicate`` / ``reorder`` -- a seq delivered twice at a level, or out of order;
- ``replay`` -- the ``since`` subscription delivered a post from below its start;
- ``spurious-retraction`` -- a retraction although no reorg happened;
- ``honest-blamed`` -- a proof-failure / hidden problem naming an honest endpoint;
- ``sender-false-inclusion`` -- the sender recorded a transaction as included in a block
  that does not hold it; ``held-by-liar`` -- messages held (fee above cap) while the honest
  base fee is far below the cap;
- ``stalled-level`` -- after the drain, a message on chain is not delivered at a level
  below ``complete`` (or to the ``since`` subscription);
- ``lost`` -- after the drain, a message on chain is not delivered at ``complete``, or an
  enqueued message never reached the chain, or a command on chain was never executed;
- ``agent-early`` -- the agent executed a command above the finalized head;
  ``agent-replay`` -- a command executed twice; ``agent-refused`` -- a genuine, new,
  valid command refused.

With a majority of liars, the adversary model allows inclusion, finality and completeness
to be bent: those kinds are counted as ``majority-*`` (allowed) unless the poll that
delivered them reported no problem at all (``silent-acceptance``: the honest endpoint's
answer differed, so the disagreement was visible). ``forged``, ``crash``, ``stall`` and
``honest-blamed`` stay violations.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import random
import resource
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from lightpost.adapters.rpc import HttpEndpoint
from lightpost.core.envelope import channel_id, decode_post, message_from_record
from lightpost.core.inbox import EVENT_TOPIC, decode_post_log
from lightpost.core.levels import Delivered, Level
from lightpost.errors import EndpointUnavailable, LightpostError, NodeError, NonceTooLow
from lightpost.node.chain import Chain
from lightpost.node.config import load_config
from lightpost.node.receiver import Receiver
from lightpost.node.runtime import load_key, make_sender, open_store
from lightpost.node.sender import enqueue_message
from lightpost_agent.command import (
    COMMANDS_CHANNEL,
    CONTENT_TYPE_COMMAND,
    Command,
    CommandResult,
    Status,
    Target,
    encode_command,
)
from lightpost_agent.service import AgentService, build_agent, with_command_channel
from lightpost_operator.anvil import LOOPBACK, free_port
from lightpost_operator.devnet import DEVNET_CHANNEL, devnet_down, devnet_up

Progress = Callable[[str], None]

STALL_S = 15.0
"""A round slower than this is a stall (the slow-drip lie lasts :data:`DRIP_S`; a transport
with a total deadline cuts it at :data:`LIAR_TIMEOUT_S`)."""

LIAR_TIMEOUT_S = 1.0
"""Timeout given to the HttpEndpoint that carries the transport-level lies."""

DRIP_S = 20.0
"""How long a slow-drip answer takes in all (one byte every :data:`DRIP_EVERY_S`)."""

DRIP_EVERY_S = 0.25
"""Pause between two bytes of a slow-drip answer (below any per-read timeout)."""

NEST_DEPTH = 5_000
"""Nesting depth of the nested-JSON lie: 5x CPython's default recursion limit (1,000), so
the stdlib parser raises RecursionError. Not deeper: py_ecc raises the limit to 100,000 on
import, and then json.loads of a 100,000-deep answer overflows the C stack -- a segfault
that killed a whole test run (the transport must bound depth without recursing)."""

FLOOD_LOGS = 20_000
"""Logs in the flood lie's answer."""

HUGE_BYTES = 8 * 1024 * 1024
"""Size of the huge-answer lie: far more than any answer a device needs in one piece."""

LIE_RATE = 0.35
"""Probability that a liar rewrites one answer."""

MAJORITY_LIE_RATE = 0.12
"""The same for colluding liars: a majority lying at every third question stops all
progress (allowed, and uninteresting); lying less lets bent deliveries happen."""

MESSAGE_EVERY = 6
"""A new message is enqueued every this many rounds."""

COMMAND_EVERY = 31
"""A new command to the agent is enqueued every this many rounds."""

COMMAND_WINDOW_S = 86_400
"""Validity window of a harness command around its sending time (never the reason for a
refusal: the chain's clock and the host's agree on anvil)."""

DRAIN_ROUNDS = 400
"""Rounds (lies continuing) after the last message, for everything to reach `complete`."""

BLAME_KINDS = frozenset({"proof-failure", "hidden"})
"""Problem kinds that name endpoints as the source of a bad answer."""

LEVELS = (Level.SIGNED, Level.INCLUDED, Level.FINAL, Level.COMPLETE)

MAJORITY_ALLOWED = frozenset(
    {
        "false-inclusion",
        "false-finality",
        "lost",
        "spurious-retraction",
        "sender-false-inclusion",
        "held-by-liar",
        "stalled-level",
        "agent-early",
        "agent-refused",
    }
)
"""What a colluding majority may achieve (the adversary model: inclusion, finality,
completeness and liveness can be bent, signed content cannot): counted, not violations --
unless the delivery came from a poll that reported nothing (``silent-acceptance``)."""


def _kind(problem: Any) -> str:
    """A problem's kind as text, "proof-failure" style (from an enum's value or name, or
    a plain string)."""
    kind = problem.kind
    return str(getattr(kind, "value", kind)).lower().replace("_", "-")


def _hexint(value: Any) -> int | None:
    try:
        return int(value, 16) if isinstance(value, str) else None
    except ValueError:
        return None


def _flip(text: str, rng: random.Random) -> str:
    """A hex string with one nibble changed (the 0x prefix kept)."""
    if not isinstance(text, str) or len(text) < 3:
        return "0x1"
    i = rng.randrange(2, len(text))
    return text[:i] + ("1" if text[i] != "1" else "2") + text[i + 1 :]


def _hex_paths(obj: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Paths of every hex-string leaf of a JSON-like value."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _hex_paths(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _hex_paths(v, (*path, i))
    elif isinstance(obj, str) and obj.startswith("0x") and len(obj) > 2:
        yield path


def _copy(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


class NoLie(Exception):
    """The chosen lie does not apply to this answer (nothing is counted)."""


# --- the lies -------------------------------------------------------------------------------


@dataclass
class Ask:
    """One question and what a lie may use to rewrite its answer."""

    method: str
    params: Sequence[Any]
    answer: Any
    rng: random.Random
    honest: Any  # the wrapped endpoint (for a liar's own extra questions)
    raw: RawServer
    label: str
    foreign: set[int]

    def latest(self) -> int:
        return int(self.honest.call("eth_blockNumber", []), 16)

    def block(self, number: int) -> Any:
        return self.honest.call("eth_getBlockByNumber", [hex(number), False])


def _alter_any(a: Ask) -> Any:
    paths = list(_hex_paths(a.answer))
    if not paths:
        raise NoLie
    path = a.rng.choice(paths)
    if not path:  # the answer is one hex string
        return _flip(a.answer, a.rng)
    out = _copy(a.answer)
    *head, last = path
    node = out
    for key in head:
        node = node[key]
    node[last] = _flip(node[last], a.rng)
    return out


def _malformed(a: Ask) -> Any:
    return a.rng.choice([None, 7, "0xzz", "", [], {}, {"number": []}, [[{}]], True, -1, 1e308])


def _nested(a: Ask) -> Any:
    """A deeply nested JSON-like value handed over in-process (what a transport that parses
    iteratively could still return): code walking it recursively would crash."""
    value: Any = a.answer
    for _ in range(NEST_DEPTH // 2):
        value = [value] if a.rng.random() < 0.5 else {"result": value}
    return value


def _logs_flood(a: Ask) -> Any:
    """The answer with many thousand copies of its logs (a count nobody bounded)."""
    if not a.answer or not isinstance(a.answer, list):
        raise NoLie
    return list(a.answer) * (FLOOD_LOGS // len(a.answer) + 1)


def _receipts_dropped(a: Ask) -> Any:
    if not a.answer or not isinstance(a.answer, list):
        raise NoLie
    out = list(a.answer)
    del out[a.rng.randrange(len(out))]
    return out


def _error(a: Ask) -> Any:
    if a.rng.random() < 0.5:
        raise EndpointUnavailable(a.label, "lying: unreachable")
    raise NodeError(a.label, "lying: internal error \x1b[31m\nFAKE LOG LINE", -32000)


def _transport(path: str) -> Callable[[Ask], Any]:
    def lie(a: Ask) -> Any:
        ep = HttpEndpoint(a.raw.url + path, a.label, timeout=LIAR_TIMEOUT_S, retries=0)
        return ep.call(a.method, list(a.params))

    return lie


def _logs_range(a: Ask) -> Any:
    """Logs of posts ABOVE the asked range (or far in the future) added to the answer."""
    flt = dict(a.params[0])
    hi = _hexint(flt.get("toBlock"))
    if hi is None:
        raise NoLie
    latest = a.latest()
    extra: list[Any] = []
    if hi < latest:
        wider = dict(flt, fromBlock=hex(hi + 1), toBlock=hex(latest))
        extra = list(a.honest.call("eth_getLogs", [wider]))[:3]
    if not extra and a.answer:
        fake = dict(a.rng.choice(a.answer))
        fake["blockNumber"] = hex(latest + a.rng.randrange(1, 10**6))
        extra = [fake]
    if not extra:
        raise NoLie
    return list(a.answer) + extra


def _logs_below(a: Ask) -> Any:
    """Logs from BELOW the asked range (a replay of old posts)."""
    lo = _hexint(dict(a.params[0]).get("fromBlock"))
    if not lo:
        raise NoLie
    older = dict(a.params[0], fromBlock="0x0", toBlock=hex(lo - 1))
    extra = list(a.honest.call("eth_getLogs", [older]))
    if not extra:
        raise NoLie
    return a.rng.sample(extra, min(2, len(extra))) + list(a.answer)


def _logs_hide(a: Ask) -> Any:
    if not a.answer:
        raise NoLie
    out = list(a.answer)
    del out[a.rng.randrange(len(out))]
    return out


def _pick_log(a: Ask) -> tuple[list[Any], dict[str, Any]]:
    """A copy of the logs answer and one of its logs, to rewrite (NoLie: no logs)."""
    if not a.answer or not isinstance(a.answer, list):
        raise NoLie
    out = _copy(a.answer)
    return out, a.rng.choice(out)


def _logs_forge(a: Ask) -> Any:
    out, log = _pick_log(a)
    log["data"] = _flip(log["data"], a.rng)
    return out


def _logs_inject(a: Ask) -> Any:
    _, fake = _pick_log(a)
    fake["data"] = _flip(fake["data"], a.rng)
    fake["transactionHash"] = _flip(fake["transactionHash"], a.rng)
    return [*a.answer, fake]


def _logs_moved(a: Ask) -> Any:
    """A log whose claimed block is wrong: another height in range, or a made-up hash."""
    out, log = _pick_log(a)
    lo, hi = (_hexint(dict(a.params[0]).get(k)) for k in ("fromBlock", "toBlock"))
    if lo is not None and hi is not None and hi > lo and a.rng.random() < 0.5:
        number = a.rng.randrange(lo, hi + 1)
        block = a.block(number)
        if isinstance(block, dict):
            log["blockNumber"], log["blockHash"] = block["number"], block["hash"]
            return out
    log["blockHash"] = _flip(log["blockHash"], a.rng)
    return out


def _logs_foreign(a: Ask) -> Any:
    """A claim of a post by a sender nobody trusts (in a real block): proving it costs."""
    _, fake = _pick_log(a)
    topics = list(fake.get("topics") or [])
    if len(topics) < 3:
        raise NoLie
    topics[2] = "0x" + bytes(12).hex() + a.rng.randbytes(20).hex()
    fake["topics"] = topics
    fake["transactionHash"] = _flip(fake["transactionHash"], a.rng)
    lo, hi = (_hexint(dict(a.params[0]).get(k)) for k in ("fromBlock", "toBlock"))
    if lo is not None and hi is not None and hi >= lo:  # a block without our posts, mostly
        block = a.block(a.rng.randrange(lo, hi + 1))
        if isinstance(block, dict):
            fake["blockNumber"], fake["blockHash"] = block["number"], block["hash"]
    number = _hexint(fake.get("blockNumber"))
    if number is not None:
        a.foreign.add(number)
    return [*a.answer, fake]


def _logs_duplicate(a: Ask) -> Any:
    if not a.answer:
        raise NoLie
    return [*a.answer, a.rng.choice(a.answer)]


def _receipt_elsewhere(a: Ask) -> Any:
    """A receipt moved to another real block (its hash is the agreed one at that height)."""
    receipt = a.answer
    if not isinstance(receipt, dict):
        # not mined (yet): claim it is, in the latest real block
        number = a.latest()
        receipt = {
            "transactionHash": a.params[0],
            "status": "0x1",
            "transactionIndex": "0x0",
            "logs": [],
            "gasUsed": "0x5208",
            "cumulativeGasUsed": "0x5208",
        }
    else:
        number = max(1, (_hexint(receipt.get("blockNumber")) or 1) - a.rng.randrange(1, 4))
    block = a.block(number)
    if not isinstance(block, dict):
        raise NoLie
    return dict(receipt, blockNumber=block["number"], blockHash=block["hash"])


def _tag_of(a: Ask) -> str | None:
    return a.params[0] if a.params and isinstance(a.params[0], str) else None


def _head_far(a: Ask) -> Any:
    """'latest'/'finalized'/'safe' answered with a block far in the future."""
    if _tag_of(a) not in ("latest", "finalized", "safe") or not isinstance(a.answer, dict):
        raise NoLie
    return dict(a.answer, number=hex(int(a.answer["number"], 16) + a.rng.randrange(5, 10**6)))


def _finalized_ahead(a: Ask) -> Any:
    """'finalized' answered with the real latest block (consistent hash, wrong tag)."""
    if _tag_of(a) not in ("finalized", "safe"):
        raise NoLie
    latest = a.honest.call("eth_getBlockByNumber", ["latest", *a.params[1:]])
    if not isinstance(latest, dict):
        raise NoLie
    return latest


def _head_stale(a: Ask) -> Any:
    if _tag_of(a) not in ("latest", "finalized", "safe") or not isinstance(a.answer, dict):
        raise NoLie
    number = max(0, int(a.answer["number"], 16) - a.rng.randrange(1, 20))
    return a.honest.call("eth_getBlockByNumber", [hex(number), *a.params[1:]])


def _header_field(a: Ask) -> Any:
    if not isinstance(a.answer, dict):
        raise NoLie
    name = a.rng.choice(
        ["hash", "stateRoot", "receiptsRoot", "transactionsRoot", "timestamp", "parentHash"]
    )
    if name not in a.answer:
        raise NoLie
    return dict(a.answer, **{name: _flip(a.answer[name], a.rng)})


def _base_fee_huge(a: Ask) -> Any:
    if a.method == "eth_feeHistory" and isinstance(a.answer, dict):
        fees = a.answer.get("baseFeePerGas") or []
        return dict(a.answer, baseFeePerGas=[hex(10**24) for _ in fees])
    if a.method == "eth_gasPrice":
        return hex(10**24)
    if not isinstance(a.answer, dict) or "baseFeePerGas" not in a.answer:
        raise NoLie
    return dict(a.answer, baseFeePerGas=hex(10**24))


def _drop_tx(a: Ask) -> Any:
    if not isinstance(a.answer, dict) or not a.answer.get("transactions"):
        raise NoLie
    txs = list(a.answer["transactions"])
    del txs[a.rng.randrange(len(txs))]
    return dict(a.answer, transactions=txs)


def _number_lie(a: Ask) -> Any:
    value = _hexint(a.answer)
    if value is None:
        raise NoLie
    return hex(a.rng.choice([value + 10**6, max(0, value - 7), 2**64 - 1, 0]))


def _proof_lie(a: Ask) -> Any:
    if not isinstance(a.answer, dict):
        raise NoLie
    out = _copy(a.answer)
    storage = out.get("storageProof") or []
    if storage and a.rng.random() < 0.6:
        item = a.rng.choice(storage)
        key = a.rng.choice(["value", "proof"])
        if key == "value":
            item["value"] = hex((_hexint(item.get("value")) or 0) + a.rng.choice([-1, 1, 2**40]))
        elif item.get("proof"):
            item["proof"] = item["proof"][:-1]
        return out
    out["storageHash"] = _flip(out.get("storageHash", "0x00"), a.rng)
    return out


def _swallow(a: Ask) -> Any:
    """eth_sendRawTransaction answered with success although the liar had to forward it:
    the honest answer is replaced by a claim that it is underpriced or a known nonce."""
    if a.rng.random() < 0.5:
        raise NonceTooLow(a.label, "nonce too low", -32000)
    return "0x" + hashlib.sha256(json.dumps(a.params).encode()).hexdigest()


LOG_METHODS = frozenset({"eth_getLogs"})
BLOCK_METHODS = frozenset({"eth_getBlockByNumber", "eth_getBlockByHash"})
RECEIPT_METHODS = frozenset({"eth_getTransactionReceipt"})
NUMBER_METHODS = frozenset(
    {"eth_blockNumber", "eth_getTransactionCount", "eth_getBalance", "eth_chainId"}
)

LIES: dict[str, tuple[frozenset[str] | None, Callable[[Ask], Any]]] = {
    # any method
    "error": (None, _error),
    "malformed": (None, _malformed),
    "altered": (None, _alter_any),
    "nested-value": (None, _nested),
    "nested-json": (None, _transport("/nested")),
    "huge-answer": (None, _transport("/huge")),
    "slow-drip": (None, _transport("/drip")),
    # logs
    "logs-above-range": (LOG_METHODS, _logs_range),
    "logs-below-range": (LOG_METHODS, _logs_below),
    "logs-hidden": (LOG_METHODS, _logs_hide),
    "logs-forged": (LOG_METHODS, _logs_forge),
    "logs-injected": (LOG_METHODS, _logs_inject),
    "logs-duplicated": (LOG_METHODS, _logs_duplicate),
    "logs-block-moved": (LOG_METHODS, _logs_moved),
    "logs-foreign-sender": (LOG_METHODS, _logs_foreign),
    "logs-flood": (LOG_METHODS, _logs_flood),
    # receipts
    "receipt-elsewhere": (RECEIPT_METHODS, _receipt_elsewhere),
    "receipts-dropped": (frozenset({"eth_getBlockReceipts"}), _receipts_dropped),
    # headers and heads
    "head-far-future": (BLOCK_METHODS, _head_far),
    "finalized-ahead": (BLOCK_METHODS, _finalized_ahead),
    "head-stale": (BLOCK_METHODS, _head_stale),
    "header-field": (BLOCK_METHODS, _header_field),
    "block-tx-dropped": (BLOCK_METHODS, _drop_tx),
    "base-fee-huge": (BLOCK_METHODS | {"eth_feeHistory", "eth_gasPrice"}, _base_fee_huge),
    "number": (NUMBER_METHODS, _number_lie),
    # proofs, broadcast
    "proof": (frozenset({"eth_getProof"}), _proof_lie),
    "broadcast-refused": (frozenset({"eth_sendRawTransaction"}), _swallow),
}
"""Every lie: (methods it applies to, None = any; the rewrite)."""

RARE = {
    "slow-drip": 0.02,
    "huge-answer": 0.1,
    "nested-json": 0.3,
    "nested-value": 0.3,
    "logs-flood": 0.2,
}
"""Relative weight of the expensive lies (1.0 for every other)."""


@dataclass
class Adversary:
    """What every liar shares: the seed, the current round, the counters."""

    seed: int
    rate: float = LIE_RATE
    round: int = 0
    lies: Counter[str] = field(default_factory=Counter)
    fired_this_round: int = 0
    max_drips: int | None = None
    kinds: tuple[str, ...] = tuple(LIES)
    foreign: set[int] = field(default_factory=set)
    """Blocks named by a foreign-sender claim this round."""

    def rng_for(self, method: str, params: Sequence[Any]) -> random.Random:
        """The same question in the same round gets the same lie from every liar (the
        colluding majority tells one consistent story)."""
        text = json.dumps([self.seed, self.round, method, list(params)], sort_keys=True)
        return random.Random(hashlib.sha256(text.encode()).digest())

    def choose(self, method: str, rng: random.Random) -> str | None:
        if rng.random() >= self.rate:
            return None
        kinds = [k for k in self.kinds if LIES[k][0] is None or method in LIES[k][0]]  # applicable
        if self.max_drips is not None and self.lies["slow-drip"] >= self.max_drips:
            kinds = [k for k in kinds if k != "slow-drip"]
        specific = [k for k in kinds if LIES[k][0] is not None]
        weights = [RARE.get(k, 1.0) * (3.0 if k in specific else 1.0) for k in kinds]
        return rng.choices(kinds, weights)[0] if kinds else None


@dataclass
class LyingEndpoint:
    """An Endpoint (``call``/``batch``) that asks ``inner`` and, seeded, lies."""

    inner: Any
    adversary: Adversary
    raw: RawServer

    @property
    def label(self) -> str:
        return str(self.inner.label)

    def _lie(self, method: str, params: Sequence[Any], answer: Any) -> Any:
        rng = self.adversary.rng_for(method, params)
        kind = self.adversary.choose(method, rng)
        if kind is None:
            return answer
        ask = Ask(
            method, params, answer, rng, self.inner, self.raw, self.label, self.adversary.foreign
        )
        try:
            out = LIES[kind][1](ask)
        except NoLie:
            return answer
        except BaseException:
            self._count(kind)
            raise
        self._count(kind)
        return out

    def _count(self, kind: str) -> None:
        self.adversary.lies[kind] += 1
        self.adversary.fired_this_round += 1

    def call(self, method: str, params: Sequence[Any]) -> Any:
        return self._lie(method, params, self.inner.call(method, params))

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        answers = self.inner.batch(calls)
        out = []
        for (method, params), answer in zip(calls, answers, strict=True):
            if isinstance(answer, Exception):
                out.append(answer)
                continue
            try:
                out.append(self._lie(method, params, answer))
            except LightpostError as exc:
                out.append(exc)
        return out


@dataclass
class Meter:
    """Passes calls through; records the blocks whose full body or receipts were asked."""

    inner: Any
    proven: set[int]

    @property
    def label(self) -> str:
        return str(self.inner.label)

    def _note(self, method: str, params: Sequence[Any]) -> None:
        full = method == "eth_getBlockByNumber" and len(params) > 1 and params[1] is True
        if full or method == "eth_getBlockReceipts":
            number = _hexint(params[0]) if params else None
            if number is not None:
                self.proven.add(number)

    def call(self, method: str, params: Sequence[Any]) -> Any:
        self._note(method, params)
        return self.inner.call(method, params)

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        for method, params in calls:
            self._note(method, params)
        return list(self.inner.batch(calls))


# --- transport-level lies: a tiny local server behind a real HttpEndpoint ------------------


class RawServer:
    """Serves malformed bytes: /nested (deeply nested JSON), /huge, /drip (slow)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        handler = type("H", (_RawHandler,), {})
        self.server = ThreadingHTTPServer((LOOPBACK, self.port), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> RawServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _RawHandler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        try:
            if self.path == "/nested":
                body = (
                    b'{"jsonrpc":"2.0","id":1,"result":'
                    + b"[" * NEST_DEPTH
                    + b"]" * NEST_DEPTH
                    + b"}"
                )
                self._send(body)
            elif self.path == "/huge":
                body = b'{"jsonrpc":"2.0","id":1,"result":"0x' + b"ab" * (HUGE_BYTES // 2) + b'"}'
                self._send(body)
            else:
                body = b'{"jsonrpc":"2.0","id":1,"result":null}'
                pad = max(0, int(DRIP_S / DRIP_EVERY_S) - len(body))
                self._send(b" " * pad + body, drip=True)
        except OSError:
            pass  # the client gave up: that is the point

    def _send(self, body: bytes, drip: bool = False) -> None:
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if not drip:
            self.wfile.write(body)
            return
        for i in range(len(body)):
            self.wfile.write(body[i : i + 1])
            self.wfile.flush()
            time.sleep(DRIP_EVERY_S)


# --- truth: the honest anvil, asked directly ----------------------------------------------------


@dataclass(frozen=True)
class Fact:
    """A message as it is on chain."""

    payload: bytes
    block_number: int
    block_hash: bytes
    tx_hash: bytes


class Truth:
    """What the chain really holds for the sender's stream (scanned incrementally)."""

    def __init__(self, url: str, inbox: bytes, sender: bytes, channel: str) -> None:
        self.ep = HttpEndpoint(url, "truth", timeout=60.0, retries=2)
        self.inbox = inbox
        self.topics = [
            "0x" + EVENT_TOPIC.hex(),
            "0x" + channel_id(channel).hex(),
            "0x" + sender.rjust(32, b"\0").hex(),
        ]
        self.facts: dict[int, Fact] = {}
        self.copies: Counter[int] = Counter()
        self.scanned = -1

    def refresh(self) -> None:
        latest = int(self.ep.call("eth_blockNumber", []), 16)
        if latest <= self.scanned:
            return
        flt = {
            "address": "0x" + self.inbox.hex(),
            "fromBlock": hex(self.scanned + 1),
            "toBlock": hex(latest),
            "topics": self.topics,
        }
        for log in self.ep.call("eth_getLogs", [flt]):
            post = decode_post_log(
                bytes.fromhex(log["address"][2:]),
                [bytes.fromhex(t[2:]) for t in log["topics"]],
                bytes.fromhex(log["data"][2:]),
            )
            for record in decode_post(post.calldata).records:
                self.copies[record.seq] += 1
                self.facts[record.seq] = Fact(
                    message_from_record(record).payload,
                    int(log["blockNumber"], 16),
                    bytes.fromhex(log["blockHash"][2:]),
                    bytes.fromhex(log["transactionHash"][2:]),
                )
        self.scanned = latest

    def finalized(self) -> int:
        return int(self.ep.call("eth_getBlockByNumber", ["finalized", False])["number"], 16)

    def receipt(self, tx_hash: bytes) -> Any:
        return self.ep.call("eth_getTransactionReceipt", ["0x" + tx_hash.hex()])


# --- the run --------------------------------------------------------------------------------


class _ResultSink:
    """Where the agent's results go (the harness checks them, it does not send them)."""

    def enqueue(self, **_: Any) -> int:
        return 0


@dataclass(frozen=True)
class Violation:
    """One broken invariant: what, and how to reproduce it (seed, round)."""

    kind: str
    seed: int
    round: int
    detail: str

    def __str__(self) -> str:
        return f"{self.kind} (seed {self.seed}, round {self.round}): {self.detail}"


@dataclass
class Result:
    """What one run saw."""

    liars: int
    seed: int
    rounds: int = 0
    messages: int = 0
    commands: int = 0
    seconds: float = 0.0
    lies: Counter[str] = field(default_factory=Counter)
    violations: list[Violation] = field(default_factory=list)
    allowed: Counter[str] = field(default_factory=Counter)
    delivered: Counter[str] = field(default_factory=Counter)
    problems: Counter[str] = field(default_factory=Counter)
    peak_rss_mib: float = 0.0
    """Peak resident memory of the harness process (sender, receivers, agent, liars)."""
    busy: Counter[str] = field(default_factory=Counter)
    """Seconds spent per kind of round (sender step, poll at a level, agent step)."""

    @property
    def violation_counts(self) -> Counter[str]:
        return Counter(v.kind for v in self.violations)

    def as_dict(self) -> dict[str, Any]:
        """Plain data (for JSON)."""
        return {
            "liars": self.liars,
            "seed": self.seed,
            "rounds": self.rounds,
            "messages": self.messages,
            "commands": self.commands,
            "seconds": round(self.seconds, 1),
            "peak_rss_mib": round(self.peak_rss_mib, 1),
            "lies": dict(self.lies),
            "violations": dict(self.violation_counts),
            "allowed": dict(self.allowed),
            "delivered": dict(self.delivered),
            "problems": dict(self.problems),
            "seconds_per_action": {k: round(v, 1) for k, v in self.busy.items()},
            "first_violations": [str(v) for v in self.first_violations()],
        }

    def first_violations(self, per_kind: int = 2) -> list[Violation]:
        seen: Counter[str] = Counter()
        out = []
        for v in self.violations:
            seen[v.kind] += 1
            if seen[v.kind] <= per_kind:
                out.append(v)
        return out


@dataclass
class _Level:
    """The receiver's stream at one level, as the checker saw it (``since``: the first
    block of a subscription started with ``since``)."""

    next_seq: int = 0
    delivered: set[int] = field(default_factory=set)
    since: int = 0

    def owed(self, truth: Truth) -> set[int]:
        """Seqs on chain this stream must deliver."""
        return {s for s, f in truth.facts.items() if f.block_number >= self.since}


class Harness:
    """One anvil, one sender and one receiver behind lying endpoints; see the module doc."""

    def __init__(
        self,
        tmp: Path,
        *,
        liars: int,
        seed: int,
        rate: float,
        max_drips: int | None,
        late_at: int | None = None,
    ):
        self.tmp = tmp
        self.result = Result(liars=liars, seed=seed)
        self.adversary = Adversary(seed=seed, rate=rate, lies=self.result.lies, max_drips=max_drips)
        self.rng = random.Random(seed)
        self.liars = liars
        self.late_at = late_at
        self.late: tuple[Receiver, _Level] | None = None
        self.stack = contextlib.ExitStack()

    # -- set-up ------------------------------------------------------------------------------

    def __enter__(self) -> Harness:
        try:
            self._start()
        except BaseException:
            self.stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    def _start(self) -> None:
        port = free_port()
        url = f"http://{LOOPBACK}:{port}"

        def customize(name: str, addresses: dict[str, str]) -> dict[str, Any]:
            extra = ""
            if name == "device-2":  # the receiving device runs the command agent
                extra = (
                    '\n[agent]\ndevice_class = "valve"\nmin_level = "final"\n'
                    'actuators = ["valve"]\n'
                    f'\n[agent.controllers]\n"{addresses["device-1"]}" = ["set"]\n'
                )
            return {"endpoints": [url] * 3, "quorum": 2, "max_delay_s": 0.0, "extra": extra}

        net = self.tmp / "net"
        desc = devnet_up(net, port=port, block_time=0, devices=2, customize=customize)
        self.stack.callback(devnet_down, net)
        self.raw = RawServer().start()
        self.stack.callback(self.raw.stop)
        self.honest = HttpEndpoint(url, "truth", timeout=60.0, retries=2)
        self.labels = [f"rpc#{i}" for i in range(3)]
        self.liar_labels = set(self.labels[: self.liars])
        send_cfg = load_config(Path(desc["devices"][0]["config"]))
        recv_cfg = load_config(Path(desc["devices"][1]["config"]))
        self.sender_address = bytes.fromhex(desc["devices"][0]["address"][2:])
        me = bytes.fromhex(desc["devices"][1]["address"][2:])
        store = open_store(send_cfg)
        self.stack.callback(store.close)
        chain = Chain(self._endpoints(url), quorum=2)
        self.stack.callback(chain.close)
        self.sender = make_sender(send_cfg, load_key(send_cfg), store, chain)
        self.stack.callback(self.sender.close)
        self.proven: set[int] = set()
        metered = [Meter(ep, self.proven) for ep in self._endpoints(url, metered=True)]
        self.receiver = Receiver(recv_cfg, endpoints=metered, me=me)
        self.stack.callback(self.receiver.close)
        inbox = bytes.fromhex(desc["inbox"][2:])
        self.truth = Truth(url, inbox, self.sender_address, DEVNET_CHANNEL)
        self.me = me
        self.url, self.recv_cfg = url, recv_cfg
        self.commands = Truth(url, inbox, self.sender_address, COMMANDS_CHANNEL)
        self.executed: Counter[int] = Counter()
        self.sent_commands = 0
        built = build_agent(recv_cfg, _ResultSink(), address=me)  # type: ignore[arg-type]
        assert built is not None, "the receiving device has no [agent]"
        agent, policy = built
        agent_receiver = Receiver(
            with_command_channel(recv_cfg, policy),
            endpoints=[Meter(ep, self.proven) for ep in self._endpoints(url, metered=True)],
            me=me,
        )
        self.agent = AgentService(
            agent,
            agent_receiver,
            level=policy.min_level,
            on_result=self._on_result,
            interval_s=0.0,
        )
        self.stack.callback(self.agent.close)
        self.levels = {level: _Level() for level in LEVELS}
        self.checked_txs: set[int] = set()
        self.watched: set[int] = set()
        self.enqueued = 0

    def _endpoints(self, url: str, *, metered: bool = False) -> list[Any]:
        """The three endpoints (liars first); ``metered``: each notes proven blocks (the
        liar's own honest source too: what the receiver asked, whoever answered)."""
        out: list[Any] = []
        for i, label in enumerate(self.labels):
            inner: Any = HttpEndpoint(url, label, timeout=30.0, retries=0)
            if metered:
                inner = Meter(inner, self.proven)
            out.append(LyingEndpoint(inner, self.adversary, self.raw) if i < self.liars else inner)
        return out

    # -- rounds --------------------------------------------------------------------------------

    def violation(self, kind: str, detail: str) -> None:
        if self.liars > 1 and kind in MAJORITY_ALLOWED:
            self.result.allowed[kind] += 1
            return
        self.result.violations.append(
            Violation(kind, self.result.seed, self.adversary.round, detail[:300])
        )

    def round(self, number: int, *, enqueue: bool) -> None:
        self.adversary.round = number
        self.adversary.fired_this_round = 0
        self.adversary.foreign.clear()
        self.proven.clear()
        if enqueue and number % MESSAGE_EVERY == 0:
            payload = f"m{self.enqueued}:".encode() + self.rng.randbytes(self.rng.randrange(1, 60))
            enqueue_message(
                self.sender.store,
                payload=payload,
                channel=DEVNET_CHANNEL,
                recipient=None,
                content_type=0,
                now=time.time(),
            )
            self.enqueued += 1
        if enqueue and number % COMMAND_EVERY == 0:
            self._send_command()
        if number == self.late_at:
            self._start_late()
        started = time.monotonic()
        action = number % (len(LEVELS) + 3)
        if action == len(LEVELS) + 2 and self.late is None:
            action = len(LEVELS) + 1
        what = {0: "sender step", len(LEVELS) + 1: "agent step"}.get(action, "")
        what = what or ("poll since" if action > len(LEVELS) else "")
        what = what or f"poll at {LEVELS[action - 1].name.lower()}"
        try:
            if action == 0:
                self.sender.step(time.time())
            elif action == len(LEVELS) + 1:
                self.agent.step(time.time())
            elif action == len(LEVELS) + 2:
                self._poll_late()
            else:
                self._poll(LEVELS[action - 1])
        except Exception as exc:
            self.violation("crash", f"{what}: {type(exc).__name__}: {str(exc)[:200]}")
        took = time.monotonic() - started
        self.result.busy[what] += took
        if took > STALL_S:
            self.violation("stall", f"{what} took {took:.1f} s")
        if action == 0:
            self._check_sender()
        self.honest.call("anvil_mine", ["0x1"])
        self.result.rounds += 1

    def _start_late(self) -> None:
        """A second device state (own data dir) whose first poll starts at the finalized
        head. (At a ``since`` above the level's head the current receiver forgets it and
        the next poll starts from block 0 -- a replay even without a liar; not what this
        subscription tests.)"""
        self.truth.refresh()
        config = dataclasses.replace(self.recv_cfg, data_dir=self.tmp / "late")
        endpoints = [Meter(ep, self.proven) for ep in self._endpoints(self.url, metered=True)]
        receiver = Receiver(config, endpoints=endpoints, me=self.me)
        self.stack.callback(receiver.close)
        since = self.truth.finalized()
        owed = [s for s, f in self.truth.facts.items() if f.block_number >= since]
        first = min(owed) if owed else max(self.truth.facts, default=-1) + 1
        self.late = (receiver, _Level(next_seq=first, since=since))
        self._late_first = True

    def _poll_late(self) -> None:
        assert self.late is not None
        receiver, state = self.late
        since = state.since if self._late_first else None
        self._late_first = False
        delivered: list[Delivered] = []
        problems: list[Any] = []
        try:
            for item in receiver.poll(Level.FINAL, since=since):
                (delivered if isinstance(item, Delivered) else problems).append(item)
        finally:
            self._check_poll(Level.FINAL, delivered, problems, state, name="since")

    def _poll(self, level: Level) -> None:
        delivered: list[Delivered] = []
        problems: list[Any] = []
        try:
            for item in self.receiver.poll(level):
                (delivered if isinstance(item, Delivered) else problems).append(item)
        finally:
            self._check_poll(level, delivered, problems)

    def _check_poll(
        self,
        level: Level,
        delivered: list[Delivered],
        problems: list[Any],
        state: _Level | None = None,
        *,
        name: str = "",
    ) -> None:
        state = self.levels[level] if state is None else state
        name = name or level.name.lower()
        honest = set(self.labels) - self.liar_labels
        for p in problems:
            kind = _kind(p)
            self.result.problems[kind] += 1
            named = set(getattr(p, "endpoints", ()) or ())
            if kind in BLAME_KINDS and named & honest:
                self.violation(
                    "honest-blamed", f"{kind} names {sorted(named & honest)}: {p.details}"
                )
            if kind == "retracted":
                self.violation("spurious-retraction", f"at {level.name.lower()}: {p.details}")
                if p.seq is not None and p.seq < state.next_seq:
                    state.next_seq = p.seq  # a retracted message may be delivered again
                    state.delivered.discard(p.seq)
        self.truth.refresh()
        self.commands.refresh()
        facts = [*self.truth.facts.values(), *self.commands.facts.values()]
        ours = {f.block_number for f in facts}  # blocks with a trusted post: proven rightly
        wasted = sorted((self.adversary.foreign & self.proven) - ours)
        if wasted:
            self.violation(
                "foreign-claim-proven",
                f"at {level.name.lower()}: blocks {wasted[:5]} fetched whole to check a claim "
                "by a sender nobody trusts",
            )
        if not delivered:
            return
        finalized = self.truth.finalized()
        silent = not problems
        for d in delivered:
            self.result.delivered[name] += 1
            self._check_delivery(level, state, d, finalized, silent)

    def _check_delivery(
        self, level: Level, state: _Level, d: Delivered, finalized: int, silent: bool
    ) -> None:
        where = f"{level.name.lower()} seq {d.seq}"
        fact = self.truth.facts.get(d.seq)
        if d.sender != self.sender_address or fact is None or fact.payload != d.payload:
            self.violation("forged", f"{where}: content not what the sender put on chain")
            return
        bent = []
        if fact.block_number < state.since:
            bent.append(("replay", f"post of block {fact.block_number}, since {state.since}"))
        if level >= Level.INCLUDED and (
            d.block_hash != fact.block_hash or d.block_number != fact.block_number
        ):
            bent.append(("false-inclusion", f"block {d.block_number}, is {fact.block_number}"))
        if level >= Level.FINAL and d.block_number > finalized:
            bent.append(("false-finality", f"block {d.block_number} > finalized {finalized}"))
        if d.seq in state.delivered:
            bent.append(("duplicate", "delivered twice"))
        elif d.seq != state.next_seq:
            bent.append(("reorder", f"expected seq {state.next_seq} next"))
        for kind, detail in bent:
            if self.liars > 1 and kind in MAJORITY_ALLOWED and silent:
                kind = "silent-acceptance"
            self.violation(kind, f"{where}: {detail}")
        state.delivered.add(d.seq)
        state.next_seq = max(state.next_seq, d.seq + 1)

    def _send_command(self) -> None:
        now = time.time()
        self.sent_commands += 1
        command = Command(
            name="set",
            args=(("valve", str(self.sent_commands)),),
            target=Target(address=self.me),
            command_seq=self.sent_commands,
            not_before=int(now) - COMMAND_WINDOW_S,
            expiry=int(now) + COMMAND_WINDOW_S,
        )
        enqueue_message(
            self.sender.store,
            payload=encode_command(command),
            channel=COMMANDS_CHANNEL,
            recipient=self.me,
            content_type=CONTENT_TYPE_COMMAND,
            now=now,
        )

    def _on_result(self, d: Delivered, result: CommandResult) -> None:
        self.commands.refresh()
        fact = self.commands.facts.get(d.seq)
        where = f"command seq {result.command_seq} ({result.status}, {result.reason})"
        if d.sender != self.sender_address or fact is None or fact.payload != d.payload:
            self.violation("forged", f"agent got a {where} that is not on chain")
            return
        if result.status == Status.EXECUTED:
            self.result.delivered["commands executed"] += 1
            self.executed[result.command_seq] += 1
            if self.executed[result.command_seq] > 1:
                self.violation("agent-replay", f"{where} executed again")
            finalized = self.truth.finalized()
            if d.block_number > finalized:
                self.violation("agent-early", f"{where}: block {d.block_number} > {finalized}")
        elif result.command_seq not in self.executed:
            self.violation("agent-refused", f"{where}: a genuine, new command refused")

    def _check_sender(self) -> None:
        from lightpost.core.outbox import State

        store = self.sender.store
        if store.counts_by_state().get(State.HELD, 0):
            self.violation("held-by-liar", "messages held although the honest base fee is low")
        # every transaction seen unfinished is checked once it names its block (also when
        # it went from BROADCAST to FINAL in one step)
        self.watched.update(tx.id for tx in store.pending_transactions())
        for tx_id in sorted(self.watched - self.checked_txs):
            try:
                tx = store.transaction(tx_id)
            except LightpostError:  # pruned
                self.checked_txs.add(tx_id)
                continue
            if tx.included is None:
                continue
            mined = tx.mined_hash or tx.tx_hash
            receipt = self.truth.receipt(mined)
            real = bytes.fromhex(receipt["blockHash"][2:]) if receipt else None
            if real != tx.included.hash:
                self.violation(
                    "sender-false-inclusion",
                    f"nonce {tx.nonce} recorded in block {tx.included.number}, "
                    f"{'not mined' if real is None else 'mined elsewhere'}",
                )
            self.checked_txs.add(tx.id)

    # -- the end ------------------------------------------------------------------------------

    def settled(self) -> bool:
        self.truth.refresh()
        on_chain = set(self.truth.facts)
        streams = [*self.levels.values(), *([self.late[1]] if self.late else [])]
        return (
            len(on_chain) >= self.enqueued
            and all(state.owed(self.truth) <= state.delivered for state in streams)
            and len(self.executed) >= self.sent_commands
        )

    def finish(self) -> None:
        self.truth.refresh()
        seqs = set(self.truth.facts)
        missing_on_chain = self.enqueued - len(seqs)
        if missing_on_chain > 0:
            self.violation(
                "lost", f"{missing_on_chain} enqueued message(s) never reached the chain"
            )
        twice = [s for s, n in self.truth.copies.items() if n > 1]
        if twice:
            self.violation("duplicate", f"seqs on chain more than once: {twice[:10]}")
        streams = [(level.name.lower(), state) for level, state in self.levels.items()]
        if self.late is not None:
            streams.append(("the since subscription", self.late[1]))
        for name, state in streams:
            owed = sorted(state.owed(self.truth) - state.delivered)
            if owed:  # at complete: lost; below: that level stalled for good
                kind = "lost" if name == "complete" else "stalled-level"
                self.violation(kind, f"{len(owed)} on chain, not delivered at {name}: {owed[:10]}")
        self.commands.refresh()
        never = sorted(set(range(1, self.sent_commands + 1)) - set(self.executed))
        if never:
            self.violation("lost", f"{len(never)} command(s) never executed: {never[:10]}")
        self.result.messages = self.enqueued
        self.result.commands = self.sent_commands


def run(
    rounds: int,
    *,
    liars: int = 1,
    seed: int = 1,
    rate: float | None = None,
    drain: int = DRAIN_ROUNDS,
    max_drips: int | None = None,
    progress: Progress = print,
) -> Result:
    """``rounds`` adversarial rounds (messages enqueued throughout), then up to ``drain``
    more (lies continuing, no new messages) until everything is delivered at complete."""
    started = time.monotonic()
    if rate is None:
        rate = LIE_RATE if liars < 2 else MAJORITY_LIE_RATE
    with (
        tempfile.TemporaryDirectory(prefix="lightpost-adversary-") as tmp,
        Harness(
            Path(tmp), liars=liars, seed=seed, rate=rate, max_drips=max_drips, late_at=rounds // 3
        ) as h,
    ):
        last = time.monotonic()
        for number in range(rounds):
            h.round(number, enqueue=True)
            if time.monotonic() - last >= 10:
                last = time.monotonic()
                r = h.result
                progress(
                    f"adversary ({liars} of 3 lying, seed {seed}): round {number + 1}/{rounds}, "
                    f"{sum(r.lies.values())} lies, {len(r.violations)} violations"
                )
        for extra in range(drain):
            if extra % (len(LEVELS) + 3) == 0 and h.settled():
                break
            h.round(rounds + extra, enqueue=False)
        h.finish()
        h.result.seconds = time.monotonic() - started
        h.result.peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return h.result
