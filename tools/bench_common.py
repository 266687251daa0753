"""What the `make bench` generators share: the benchmark's device key, the 100-byte JSON
meter reading every figure is expressed in, and one-line progress reports on stderr."""

from __future__ import annotations

import random
import sys
import time

DEV_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
"""anvil dev account #1 (public test mnemonic): the benchmark's device."""

RECIPIENT = bytes.fromhex("3c44cdddb6a900fa2b585dd299e03d12fa4293bc")
"""anvil dev account #2: the recipient of direct messages and of the paper's transactions
(an externally owned account, so those transactions execute no code)."""

READING_BYTES = 100
"""Size of one meter reading, the unit of every per-reading figure."""

READING_TEMPLATE = (
    '{{"id":"m-{meter:04d}","ts":{ts:13d},"kWh":{kwh:9.3f},"V":{v:5.1f},'
    '"A":{a:5.2f},"PF":{pf:4.2f},"Hz":{hz:5.2f},"T":{t:4.1f}}}'
)
"""A smart-meter reading as JSON text; every field has a fixed width, so it is always
exactly READING_BYTES long."""

READING_SEED = 7
"""Seed of the readings' values: the same bytes in every run."""

_START = time.monotonic()


def reading(i: int) -> bytes:
    """Reading number ``i``: a minute apart, plausible values varying like a real meter's
    (so that compression sees realistic, not identical, text)."""
    rng = random.Random(READING_SEED * 1_000_003 + i)
    text = READING_TEMPLATE.format(
        meter=i % 10_000,
        ts=1_700_000_000_000 + 60_000 * i,
        kwh=10_000 + 0.137 * i + rng.random() * 0.01,
        v=rng.uniform(225.0, 235.0),
        a=rng.uniform(10.0, 40.0),
        pf=rng.uniform(0.85, 0.99),
        hz=rng.uniform(49.95, 50.05),
        t=rng.uniform(15.0, 30.0),
    )
    data = text.encode()
    assert len(data) == READING_BYTES, data
    return data


def progress(message: str) -> None:
    """One progress line on stderr, with the time since the run started."""
    elapsed = time.monotonic() - _START
    print(f"[bench {int(elapsed) // 60:02d}:{int(elapsed) % 60:02d}] {message}", file=sys.stderr)
