"""The short, seeded version of `make reliability`'s gateway chaos run
(tools/reliability_gateway.py, issue 14's 'done when'): two `lightpost gateway run` processes
share one real Mosquitto, devices publish a few hundred records, a gateway and the broker are
each SIGKILLed once at a seeded moment and restarted; counted from the chain: 0 lost,
0 duplicated deliveries, by the chain and by the merging receiver (lightpost_gateway.follow, at
`complete`) following both gateways live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import reliability_gateway as rg

from lightpost_operator.mosquitto import mosquitto_binary


@pytest.mark.parametrize("seed", [3])
def test_two_gateways_one_broker_kill_9_of_each_loses_and_duplicates_nothing(
    tmp_path: Path, seed: int
) -> None:
    if mosquitto_binary() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("mosquitto missing under CI: make setup")
        pytest.skip("mosquitto not installed: make setup (or apt-get install mosquitto)")
    r = rg.chaos(
        records=300,
        devices=10,
        gateway_kills=1,
        broker_kills=1,
        seed=seed,
        workdir=tmp_path,
        progress=print,
    )
    print(r.as_dict())
    assert (r.gateway_kills, r.broker_kills) == (1, 1)
    assert r.records == 300 and r.signed >= 300 + r.devices  # data and at least one birth each
    assert r.anchor_txs >= 2  # both gateways anchored
    assert r.lost == 0, r.problems
    assert r.duplicated == 0 and r.forged == 0
    assert r.delivered == r.signed
    assert r.unexplained_anchors == 0 and r.unlinked == 0 and r.undrained_devices == 0
    # the same through the merging receiver a user runs, at complete, live through the kills
    assert r.merged_lost == 0, r.problems
    assert r.merged_duplicated == 0 and r.merged_forged == 0
    assert r.merged_delivered == r.signed
    assert r.merged_restarts >= 2  # the broker's kill -9 was a receiver restart
    # a gateway outlives the broker's kill -9: it reconnects by itself, no supervisor needed
    assert r.gateway_exits == {}, r.gateway_exits
