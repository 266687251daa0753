"""The devnet's beacon light-client API: anvil's blocks, each wrapped as the execution payload of
a generated beacon block (slot = block number), signed by a generated committee (minimal preset),
served on loopback as the standard routes in JSON form, so a device runs ``trust = "beacon"``
through the real spec path. Headers are only served once the wall clock has reached their
signature slot (a light client refuses answers from the future).

A lying endpoint for the tests and the demo: ``lie=`` one of :data:`LIES`, each a way a beacon
node can lie that the light client must refuse (tests/integration/test_beacon_trust.py)."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from lightpost.adapters.rpc import HttpEndpoint
from lightpost.errors import LightpostError
from lightpost_beacon.containers import committee_to_json
from lightpost_operator.beacon_chain import GeneratedChain, devnet_config, execution_header
from lightpost_operator.proxy import flip_hex

__all__ = ["LIES", "BeaconDevnet"]

ROUTE: Final = "/eth/v1/beacon/light_client/"
MAX_BLOCKS_PER_REFRESH: Final = 1024
"""anvil blocks wrapped per request at most (a long-idle devnet catches up over requests)."""
FINALITY_LAG_SLOTS: Final = 16
"""Two epochs of the minimal preset: the finalized block trails the head like Casper FFG's."""
LIAR_SEED: Final = b"lightpost devnet liar"
"""The seed of the committee a ``wrong-committee`` liar hands out (not the chain's)."""
UPDATE_ROUTES: Final = ("updates", "finality_update", "optimistic_update")


class BeaconDevnet:
    """A generated beacon chain over the anvil at ``rpc_url``; ``serve()`` starts the API."""

    def __init__(
        self, rpc_url: str, *, clock: Callable[[], float] = time.time, lie: str | None = None
    ) -> None:
        if lie is not None and lie not in LIES:
            raise ValueError(f"unknown lie {lie!r}: one of {', '.join(LIES)}")
        self.lie = lie
        self.rpc = HttpEndpoint(url=rpc_url, label="anvil")
        genesis = self.rpc.call("eth_getBlockByNumber", ["0x0", False])
        self.config = devnet_config(genesis_time=int(genesis["timestamp"], 16))
        self.chain = GeneratedChain(self.config)
        self.clock = clock
        self._roots: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._other: GeneratedChain | None = None

    @property
    def head(self) -> int:
        return max(self.chain.blocks, default=0)

    def refresh(self) -> None:
        """Wrap anvil's new blocks (at most MAX_BLOCKS_PER_REFRESH)."""
        with self._lock:
            latest = int(self.rpc.call("eth_blockNumber", []), 16)
            for number in range(self.head + 1, min(latest, self.head + MAX_BLOCKS_PER_REFRESH) + 1):
                block = self.rpc.call("eth_getBlockByNumber", [hex(number), False])
                raws = [
                    bytes.fromhex(self.rpc.call("eth_getRawTransactionByHash", [h])[2:])
                    for h in block["transactions"]
                ]
                finalized = number - FINALITY_LAG_SLOTS
                added = self.chain.add_block(
                    number, execution_header(block, raws), finalized if finalized >= 1 else None
                )
                self._roots["0x" + added.header.beacon.root().hex()] = number

    def root_of(self, number: int) -> bytes:
        """The beacon block root wrapping anvil block ``number`` (a device's trusted root)."""
        self.refresh()
        return self.chain.blocks[number].header.beacon.root()

    def _signable_head(self) -> int:
        """The newest block whose signature slot (the next one) the clock has reached."""
        return min(self.head, self.config.slot_at(int(self.clock())) - 1)

    def answer(self, path: str) -> Any:
        """The JSON answer to a GET of ``path`` (altered by the ``lie``, if any), None: 404."""
        answer = self._honest(path)
        if self.lie is None or answer is None:
            return answer
        route = urlsplit(path).path[len(ROUTE) :].split("/", 1)[0]
        return LIES[self.lie](self, route, copy.deepcopy(answer))

    def other_committee(self, period: int) -> dict[str, Any]:
        """A committee of ``period`` that is not the chain's (JSON)."""
        if self._other is None:
            self._other = GeneratedChain(self.config, seed=LIAR_SEED)
        return committee_to_json(self._other.committee(period))

    def _honest(self, path: str) -> Any:
        self.refresh()
        parts = urlsplit(path)
        if not parts.path.startswith(ROUTE):
            return None
        route = parts.path[len(ROUTE) :]
        head = self._signable_head()
        if route.startswith("bootstrap/"):
            slot = self._roots.get(route.split("/", 1)[1])
            return None if slot is None else self.chain.bootstrap(slot)
        if route == "updates":
            query = parse_qs(parts.query)
            start, count = int(query["start_period"][0]), int(query["count"][0])
            period_slots = self.config.slots_per_epoch * self.config.epochs_per_period
            out = []
            for period in range(start, start + min(count, 128)):
                attested = min(head, (period + 1) * period_slots - 2)
                if attested < period * period_slots + 1:
                    break
                out.append(self.chain.update(attested, attested + 1))
            return out
        if route in ("finality_update", "optimistic_update") and head >= 1:
            return self.chain.update(head, head + 1, kind=route)
        return None

    def serve(self, port: int = 0) -> str:
        """Start serving on 127.0.0.1 (a thread); the base URL."""
        devnet = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                try:
                    answer = devnet.answer(self.path)
                except (LightpostError, KeyError, ValueError, IndexError):
                    answer = None  # anvil unreachable, or a malformed request
                body = json.dumps(answer).encode() if answer is not None else b"{}"
                self.send_response(200 if answer is not None else 404)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


# --- lying modes: each must be refused, the endpoint named (beacon#N) ---


def _each_update(
    alter: Callable[[dict[str, Any]], None],
) -> Callable[[BeaconDevnet, str, Any], Any]:
    """A lie that alters the data of every update served (updates, finality, optimistic)."""

    def lie(devnet: BeaconDevnet, route: str, answer: Any) -> Any:
        if route in UPDATE_ROUTES:
            for update in answer if isinstance(answer, list) else [answer]:
                alter(update["data"])
        return answer

    return lie


def _bad_signature(data: dict[str, Any]) -> None:
    agg = data["sync_aggregate"]
    agg["sync_committee_signature"] = flip_hex(agg["sync_committee_signature"], 40)


def _too_few_signers(data: dict[str, Any]) -> None:
    data["sync_aggregate"]["sync_committee_bits"] = "0x00000000"


def _wrong_branch(data: dict[str, Any]) -> None:
    header = data["attested_header"]
    header["execution"]["block_hash"] = flip_hex(header["execution"]["block_hash"])


def _future_slot(data: dict[str, Any]) -> None:
    data["signature_slot"] = str(int(data["signature_slot"]) + 10**6)


def _stale(devnet: BeaconDevnet, route: str, answer: Any) -> Any:
    """A node stuck at the chain's first block: every update it serves is that block's, signed
    by the committee, with nothing newer (no finality, no next committee)."""
    if route not in UPDATE_ROUTES:
        return answer
    stuck = devnet.chain.update(1, 2, kind="optimistic_update")
    return [stuck] if route == "updates" else stuck


def _wrong_committee(devnet: BeaconDevnet, route: str, answer: Any) -> Any:
    """Hands out a committee that is not the chain's: as the bootstrap's current committee and
    as every update's next one (the take-over of later periods), branches unchanged."""
    if route == "bootstrap":
        slot = int(answer["data"]["header"]["beacon"]["slot"])
        period = devnet.config.period_at(slot)
        answer["data"]["current_sync_committee"] = devnet.other_committee(period)
    elif route == "updates":
        for update in answer:
            slot = int(update["data"]["attested_header"]["beacon"]["slot"])
            period = devnet.config.period_at(slot) + 1
            update["data"]["next_sync_committee"] = devnet.other_committee(period)
    return answer


LIES: Final[dict[str, Callable[[BeaconDevnet, str, Any], Any]]] = {
    "bad-signature": _each_update(_bad_signature),
    "too-few-signers": _each_update(_too_few_signers),
    "wrong-branch": _each_update(_wrong_branch),
    "future-slot": _each_update(_future_slot),
    "stale": _stale,
    "wrong-committee": _wrong_committee,
}
"""Lying modes (name -> (devnet, route, honest answer) -> the lie served)."""


def main(argv: list[str] | None = None) -> None:
    """``python -m lightpost_operator.beacon_server RPC_URL PORT [LIE]``: serve until killed (the
    devnet's background beacon API, started by ``lightpost devnet up --beacon``; LIE: one of
    :data:`LIES`, a lying endpoint)."""
    import sys

    args = argv if argv is not None else sys.argv[1:]
    rpc_url, port = args[:2]
    BeaconDevnet(rpc_url, lie=args[2] if len(args) > 2 else None).serve(int(port))
    threading.Event().wait()


if __name__ == "__main__":
    main()
