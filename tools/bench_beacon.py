"""Beacon light client: time per update verified on the real mainnet data (512 signers), with the
committee's keys decompressed once and from bytes, and the persisted state's size.

Usage: python tools/bench_beacon.py   (needs the lightpost[beacon] extra and ../shared/vectors)
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

from lightpost_beacon import containers as beacon
from lightpost_beacon import lightclient
from lightpost_beacon.bls import load_bls
from lightpost_beacon.sources import encode_state

DATA = (
    Path(__file__).resolve().parents[2]
    / "shared/vectors/beacon/official-minimal-and-mainnet/ethereum/testdata"
)
ROUNDS = 20


def _load(name: str) -> Any:
    return json.loads((DATA / f"{name}.json").read_bytes())


def _median_ms(run: Any, rounds: int = ROUNDS) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    config = beacon.MAINNET
    data = beacon.bootstrap_from_json(_load("bootstrap"), config)
    updates = beacon.updates_from_json(_load("updates"), config)
    (finality,) = beacon.updates_from_json(_load("finality"), config)
    (optimistic,) = beacon.updates_from_json(_load("optimistic"), config)
    now = optimistic.signature_slot
    bls = load_bls()
    store = lightclient.bootstrap(
        config, data.header.beacon.root(), data, current_slot=data.header.beacon.slot
    )
    one_committee = len(encode_state(store))
    for update in updates:
        store = lightclient.process_update(config, store, update, current_slot=now, bls=bls)

    def verify(update: beacon.LightClientUpdate, verifier: Any) -> None:
        lightclient.process_update(config, store, update, current_slot=now, bls=verifier)

    rows = {
        "optimistic update, keys decompressed": _median_ms(lambda: verify(optimistic, bls)),
        "finality update, keys decompressed": _median_ms(lambda: verify(finality, bls)),
        "optimistic update, keys from bytes": _median_ms(lambda: verify(optimistic, load_bls()), 5),
    }
    for name, ms in rows.items():
        print(f"{name}: {ms:.1f} ms")
    print(f"state on disk: {one_committee} bytes with one committee known, "
          f"{len(encode_state(store))} with two")  # fmt: skip


if __name__ == "__main__":
    main()
