"""Silent and dead devices for the merging receiver (issue 14: withholding shows "as a silent
device past its declared cadence").

A device is watched from the first birth a gateway relays (its declared cadence); every record
of a higher seq taken from a gateway is the receiver's evidence that it is alive, timed by the
receiver's own wall clock (injected). Death notices (the device's MQTT will, signed by it) come
from the broker on the device's own topic, not through a gateway, so the receiver subscribes to
the topic of each watched device and takes only deaths from it. The rules are pure
(:func:`lightpost_gateway.merge.watch_record`, :func:`~lightpost_gateway.merge.watch_death`,
:func:`~lightpost_gateway.merge.watch_check`); the watches persist in the receiver's file so a
restart keeps each device's cadence and last record time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from lightpost.errors import LightpostError

from .follow_store import ReceiverStore
from .merge import Watch, watch_check, watch_death, watch_record
from .record import Domain, Kind, Liveness, open_record, record_topic
from .service import GatewayClient

__all__ = ["LIVENESS_CHECK_S", "MAX_WATCHED", "Watcher"]

LIVENESS_CHECK_S = 1.0
"""How often every watched device's liveness is judged (cadences are whole seconds)."""

MAX_WATCHED = 1 << 16
"""Devices watched at most (a subscription each): past it a new device is not watched."""


class Watcher:
    """The watches of one receiver: fed by the follower, judged by :meth:`check`."""

    def __init__(
        self,
        *,
        store: ReceiverStore,
        client: GatewayClient,
        domain: Domain,
        wall: Callable[[], float],
    ) -> None:
        self.store, self.client, self.domain, self._wall = store, client, domain, wall
        self._watches: dict[bytes, Watch] = {}
        self._topics: dict[str, bytes] = {}
        self._checked = -1e18

    def _now_ms(self) -> int:
        return int(self._wall() * 1000)

    def start(self) -> None:
        for device, w in self.store.watches().items():
            self._watch(device, w)

    def _watch(self, device: bytes, w: Watch) -> None:
        if device not in self._watches:
            topic = record_topic(device)
            self._topics[topic] = device
            self.client.listen(topic)
        self._watches[device] = w

    def record(self, device: bytes, seq: int, hash: bytes, cadence_s: int | None) -> bool:
        """A new record taken from a gateway. False: a new device past MAX_WATCHED."""
        old = self._watches.get(device)
        if old is None and len(self._watches) >= MAX_WATCHED:
            return cadence_s is None
        w = watch_record(old, seq=seq, hash=hash, cadence_s=cadence_s, now_ms=self._now_ms())
        if w is not None and w != old:
            self.store.put_watch(device, w)
            self._watch(device, w)
        return True

    def message(self, topic: str, msg: bytes) -> bool:
        """A message on a watched device's topic: a death notice signed by it counts."""
        device = self._topics.get(topic)
        if device is None:
            return False
        try:
            signed, signer, _ = open_record(msg, self.domain)
        except LightpostError:
            return True  # not the device's: anyone may publish there; only its signature counts
        if signer == device and signed.record.kind == Kind.DEATH:
            old = self._watches[device]
            r = signed.record
            w = watch_death(old, seq=r.seq, prev=r.prev, now_ms=self._now_ms())
            if w is not None and w != old:
                self.store.put_watch(device, w)
                self._watches[device] = w
        return True

    def check(self, now: float) -> Iterator[tuple[bytes, Liveness, Watch]]:
        """(device, SILENT or DEAD, its watch) for each device that just became so."""
        if now - self._checked < LIVENESS_CHECK_S:
            return
        self._checked = now
        now_ms = self._now_ms()
        for device, old in list(self._watches.items()):
            w, report = watch_check(old, now_ms=now_ms)
            if w != old:
                self.store.put_watch(device, w)
                self._watches[device] = w
            if report is not None:
                yield device, report, w
